"""Values written the way the docker provider reads them back from the engine.

The provider stores what it reads from Docker after a create, and the next `pulumi up` diffs
the program's inputs against that; both fields below force a replacement. An input that means
the same but is spelled differently ("1" cpus against the "1.0" read back, "60s" against
"1m0s") would replace the container on every `up`.
"""

from __future__ import annotations

from fractions import Fraction

NANO = 10**9


def docker_cpus(cpus: float) -> str:
    """`cpus` as the provider reads NanoCPUs back: nine decimals with trailing zeros cut,
    except that a value whose nine-decimal form holds exactly nine zeros gets one decimal
    (1 -> "1.0", 0.5 -> "0.5", 1.25 -> "1.25", 0.05 -> "0.1", 10 -> "10.")."""
    nano = round(Fraction(cpus) * NANO)
    if nano <= 0:
        raise ValueError(f"cpus must be positive, got {cpus}")
    whole, rest = divmod(nano, NANO)
    nine = f"{whole}.{rest:09d}"
    if nine.count("0") == 9:
        # Go's big.Rat rounds halves away from zero.
        tenths = (nano * 10 + NANO // 2) // NANO
        return f"{tenths // 10}.{tenths % 10}"
    return nine.rstrip("0")


def docker_duration(seconds: int) -> str:
    """Whole seconds as Go's time.Duration prints them, as the provider reads a healthcheck's
    durations back: "5s", "1m0s", "1m30s", "1h0m0s"."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds}")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"

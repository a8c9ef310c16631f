"""Durations and times as operators type them, and as the engine writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from astats_console.durations import (
    format_bytes,
    format_duration,
    parse_duration,
    parse_engine_time,
    parse_since,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h30m", 5400), ("2d", 172800), ("90", 90), ("1.5h", 5400)],
)
def test_durations_read_as_operators_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10x", "m10", "10 m", "1h-5m", "ten minutes"])
def test_a_bad_duration_is_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="examples: 30s, 10m"):
        parse_duration(text)


def test_since_takes_a_duration_back_or_a_time() -> None:
    assert parse_since("10m", NOW) == NOW - timedelta(minutes=10)
    assert parse_since("2026-11-24T11:00:00Z", NOW) == datetime(2026, 11, 24, 11, tzinfo=UTC)
    # A time without a zone is UTC, as the engine's own times are.
    assert parse_since("2026-11-24 11:30", NOW) == datetime(2026, 11, 24, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [("10q", "neither a duration"), ("2026-11-25T00:00:00Z", "in the future")],
)
def test_a_bad_since_says_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_since(text, NOW)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(-3, "0s"), (45, "45s"), (725, "12m05s"), (11220, "3h07m"), (187200, "2d04h")],
)
def test_durations_show_two_units_at_most(seconds: int, shown: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == shown


def test_sizes_use_binary_units() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(256 * 1024**2) == "256.0 MiB"
    assert format_bytes(3 * 1024**4) == "3.0 TiB"


def test_engine_times_keep_microseconds_and_zero_means_never() -> None:
    moment = parse_engine_time("2026-11-25T04:07:04.193227923Z")
    assert moment == datetime(2026, 11, 25, 4, 7, 4, 193227, tzinfo=UTC)
    assert parse_engine_time("2026-11-25T05:07:04+01:00") == datetime(
        2026, 11, 25, 4, 7, 4, tzinfo=UTC
    )
    assert parse_engine_time("0001-01-01T00:00:00Z") is None
    assert parse_engine_time("") is None
    assert parse_engine_time("yesterday") is None

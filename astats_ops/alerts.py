"""Failure alerts: one JSON POST to a webhook per failed scheduler run, and one per new
problem of the WAL archive (``archiving failing: <reason>``, ``archiving lags: oldest WAL waiting
<n> s``, ``pg_wal holds <size> waiting for the archive``; see :mod:`astats_ops.pitr`), which the
scheduler checks between runs too. A failed physical backup or drill fails its run
(``physical backup failed: ...``, ``physical drill failed: ...``).

The URL comes from ``ASTATS_ALERT_WEBHOOK_URL`` (the scheduler container gets it as a secret
file, exported by its launcher, because such URLs usually carry a token). A post is tried at
most ``ATTEMPTS`` times within ``DEADLINE_S`` seconds in all, and it is sent after the run has
been recorded, so a webhook that is down, slow or hanging delays the next run by a few
seconds at most and never fails a backup. The URL is never printed: its token would end up in
the container's log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

WEBHOOK_ENV = "ASTATS_ALERT_WEBHOOK_URL"
ATTEMPTS = 3
DEADLINE_S = 6.0
ATTEMPT_TIMEOUT_S = 2.0
BACKOFF_S = 0.5


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    error: str | None


def webhook_url(env: Mapping[str, str]) -> str | None:
    return env.get(WEBHOOK_ENV, "").strip() or None


def has_new_problem(alerted: Collection[str], current: Collection[str]) -> bool:
    """Whether ``current`` (problem kinds) holds one that ``alerted`` did not: a lasting problem
    is posted when it appears, not at every check while it lasts."""
    return bool(set(current) - set(alerted))


def post_alert(url: str, payload: Mapping[str, Any], *, deadline_s: float = DEADLINE_S) -> Delivery:
    """POST ``payload`` as JSON; retried on errors and non-2xx answers within the deadline."""
    # Imported here: urllib.request brings http.client, ssl and email, a fifth of the start-up
    # time of every astats_ops command (the healthcheck, a restore), and only alerts need it.
    import urllib.error
    import urllib.request

    body = json.dumps(payload).encode()
    give_up = time.monotonic() + deadline_s
    error = "not attempted"
    attempts = 0
    while attempts < ATTEMPTS:
        remaining = give_up - time.monotonic()
        if remaining <= 0:
            break
        attempts += 1
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=min(ATTEMPT_TIMEOUT_S, remaining)):
                return Delivery(True, attempts, None)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except ValueError:
            return Delivery(False, attempts, f"{WEBHOOK_ENV} is not an http(s) URL")
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc)) or type(exc).__name__
        time.sleep(max(0.0, min(BACKOFF_S, give_up - time.monotonic())))
    return Delivery(False, attempts, error)

"""Reports POSTed as JSON from a background thread, so a dead webhook never holds up a watch.

Each report is tried at most ``ATTEMPTS`` times within ``DEADLINE_S``; at most ``BACKLOG``
reports wait, and the oldest waiting one is dropped (and said so) when more arrive.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ATTEMPTS = 3
DEADLINE_S = 6.0
ATTEMPT_TIMEOUT_S = 2.0
BACKOFF_S = 0.5
BACKLOG = 100


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    error: str | None


def post_json(url: str, payload: dict[str, Any], *, deadline_s: float = DEADLINE_S) -> Delivery:
    body = json.dumps(payload).encode()
    give_up = time.monotonic() + deadline_s
    error = "no attempt fitted in the deadline"
    attempts = 0
    while attempts < ATTEMPTS and (remaining := give_up - time.monotonic()) > 0:
        attempts += 1
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=min(ATTEMPT_TIMEOUT_S, remaining)):
                return Delivery(True, attempts, None)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc)) or type(exc).__name__
        time.sleep(max(0.0, min(BACKOFF_S, give_up - time.monotonic())))
    return Delivery(False, attempts, error)


class Webhook:
    """Delivers in the order reported; ``on_failure`` hears of each report that was lost."""

    def __init__(self, url: str, on_failure: Callable[[str], None]) -> None:
        self.url = url
        self.on_failure = on_failure
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=BACKLOG)
        threading.Thread(target=self._deliver, daemon=True).start()

    def send(self, payload: dict[str, Any]) -> None:
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                except queue.Empty:
                    continue
                self.on_failure(f"webhook backlog full, dropped: {dropped.get('message')}")

    def _deliver(self) -> None:
        while True:
            payload = self._queue.get()
            delivery = post_json(self.url, payload)
            if not delivery.delivered:
                self.on_failure(
                    f"webhook post failed after {delivery.attempts} attempts "
                    f"({delivery.error}): {payload.get('message')}"
                )
            self._queue.task_done()

    def flush(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for waiting reports to go out (before exiting)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

"""Bounded loopback traffic through the stack's nginx while a rollout runs: a steady request
loop counting failures, and WebSocket clients that record how their connection closed and then
reconnect."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field

import httpx
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from tests.support.resend import get_as_a_browser

MAX_REQUESTS = 200_000
MAX_SECONDS = 900.0


@dataclass
class LoadReport:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    """GETs resent once on a new connection after their kept-alive one was closed under them;
    a resend that fails too is a failure."""

    def slower_than(self, seconds: float) -> int:
        return sum(1 for latency in self.latencies_s if latency > seconds)

    @property
    def max_s(self) -> float:
        return max(self.latencies_s, default=0.0)

    @property
    def p99_s(self) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


class SteadyLoad:
    """GETs `paths` in turn, one at a time, until stopped (or its bounds run out); a request
    that takes longer than `timeout_s` fails."""

    def __init__(
        self,
        base_url: str,
        paths: tuple[str, ...],
        interval_s: float = 0.02,
        timeout_s: float = 10,
        *,
        verify: ssl.SSLContext | bool = True,
        server_name: str | None = None,
    ):
        """Over HTTPS, `verify` holds the CA to trust and `server_name` the name to ask for
        (SNI, Host) and to verify, when `base_url` is an address."""
        self.base_url = base_url
        self.paths = paths
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.verify = verify
        self.server_name = server_name
        self.report = LoadReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        name = self.server_name
        with httpx.Client(
            base_url=self.base_url,
            timeout=self.timeout_s,
            verify=self.verify,
            headers={"Host": name} if name is not None else None,
        ) as client:
            extensions = {"sni_hostname": name} if name is not None else None
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self.report.requests >= MAX_REQUESTS:
                    break
                path = self.paths[self.report.requests % len(self.paths)]
                self.report.requests += 1
                started = time.monotonic()
                try:
                    answer, resent = get_as_a_browser(client, path, extensions=extensions)
                    if resent:
                        self.report.resent.append(path)
                    if answer.status_code >= 500:
                        self.report.failures.append(f"{path}: HTTP {answer.status_code}")
                except httpx.HTTPError as error:
                    self.report.failures.append(f"{path}: {type(error).__name__}: {error}")
                self.report.latencies_s.append(time.monotonic() - started)
                self._stop.wait(self.interval_s)


def echo(url: str, message: str = "ping") -> str:
    with connect(url, open_timeout=10) as socket:
        socket.send(message)
        reply = socket.recv(timeout=10)
    return str(reply)


class CockpitClient:
    """Holds a WebSocket open, answering pings, until the server closes it; then records the
    close code and proves it can reconnect and echo."""

    def __init__(self, url: str):
        self.url = url
        self.close_code: int | None = None
        self.close_error: str | None = None
        self.reconnected_echo: str | None = None
        self._socket: ClientConnection = connect(url, open_timeout=10)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while True:
            if time.monotonic() > deadline:
                self.close_error = "still open when the bound ran out"
                return
            try:
                self._socket.recv(timeout=5)
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                received = closed.rcvd
                self.close_code = received.code if received is not None else None
                if received is None:
                    self.close_error = f"closed without a close frame: {closed}"
                break
        for _ in range(50):
            try:
                self.reconnected_echo = echo(self.url, "again")
                return
            except (OSError, WebSocketException):
                time.sleep(0.2)

    def wait(self, timeout: float = 120) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        self._socket.close()

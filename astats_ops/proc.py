"""Running the pg_* tools: child processes never outlive us, stderr is kept for messages.

A stop request (``request_cancel``, called from the schedule's SIGTERM handler) kills the
running tools and makes every later ``run_tool`` call raise :class:`Cancelled`, so the caller's
``finally`` blocks remove what the interrupted run created.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from astats_ops.errors import tool_error_text

_running: set[subprocess.Popen[bytes]] = set()
_cancel_requested = False


class Cancelled(BaseException):
    """A stop was requested while (or before) a tool ran."""


def request_cancel() -> None:
    global _cancel_requested
    _cancel_requested = True
    for proc in list(_running):
        with contextlib.suppress(OSError):
            proc.kill()


def _check_cancelled() -> None:
    if _cancel_requested:
        raise Cancelled("stop requested")


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error_text(self, tool: str) -> str:
        text = tool_error_text(self.stderr, tool)
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = str(-self.returncode)
            text = f"{tool} was killed by signal {name}; {text}"
        return text


def run_tool(cmd: Sequence[str], env: Mapping[str, str]) -> ToolResult:
    """Run ``cmd`` to completion with stdin/stdout closed off; kill it if we are interrupted."""
    _check_cancelled()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=dict(env),
        )
        _running.add(proc)
        try:
            _check_cancelled()
            returncode = proc.wait()
            _check_cancelled()
        finally:
            _running.discard(proc)
            stop(proc)
        stderr.seek(0)
        return ToolResult(returncode, stderr.read().decode(errors="replace"))


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if it still runs and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()

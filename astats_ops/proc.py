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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from astats_ops.errors import tool_error_text

DEVNULL = subprocess.DEVNULL
PIPE = subprocess.PIPE

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


def check_cancelled() -> None:
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
    with spawn(cmd, env) as tool:
        returncode = tool.proc.wait()
        check_cancelled()
        return ToolResult(returncode, tool.stderr_text())


@dataclass(frozen=True)
class Spawned:
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def result(self) -> ToolResult:
        return ToolResult(self.proc.wait(), self.stderr_text())


@contextlib.contextmanager
def spawn(
    cmd: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin: int = DEVNULL,
    stdout: int = DEVNULL,
    cleanup: bool = False,
) -> Iterator[Spawned]:
    """Start ``cmd`` (stderr kept in a temp file); it is killed when the block ends, and by a
    stop request while it runs, unless it is ``cleanup`` that must still run after one."""
    if not cleanup:
        check_cancelled()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(list(cmd), stdin=stdin, stdout=stdout, stderr=stderr, env=dict(env))
        if not cleanup:
            _running.add(proc)
        try:
            if not cleanup:
                check_cancelled()
            yield Spawned(proc, stderr)
        finally:
            _running.discard(proc)
            stop(proc)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if it still runs and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()

"""Driving a program through a pseudo-terminal, as an operator's interactive session does.

The program gets a pty as its stdin, stdout and stderr, so ``isatty()`` is true for it (and
``docker exec`` gets ``-t``). A test waits for what the program prints (a prompt) before it
types, as a person would: input typed ahead of a program that switches the terminal to raw
mode may be thrown away.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time
from collections.abc import Mapping, Sequence

ROWS, COLUMNS = 40, 160


class TerminalError(AssertionError):
    """The program did not print what was awaited, or did not end, in time."""


class Terminal:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *, wait_s: float) -> None:
        self.wait_s = wait_s
        self.output = ""
        self._seen = 0
        self._status: int | None = None
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its stdio is the pty
            try:
                # A terminal's size, as a real one has (0x0 makes pagers page every line).
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
                os.execvpe(argv[0], list(argv), dict(env))
            finally:
                os._exit(127)

    def _read(self, deadline: float) -> bool:
        """Read what is there before ``deadline``; False once the program has closed the pty."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the pty has ended
            return False
        self.output += chunk.decode(errors="replace")
        return bool(chunk)

    def expect(self, text: str) -> str:
        """Wait until ``text`` appears after what earlier calls matched; return what came
        before it."""
        deadline = time.monotonic() + self.wait_s
        while (found := self.output.find(text, self._seen)) < 0:
            if not self._read(deadline) or time.monotonic() >= deadline:
                raise TerminalError(f"never printed {text!r}; it printed: {self.output[-2000:]!r}")
        before = self.output[self._seen : found]
        self._seen = found + len(text)
        return before

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self) -> int:
        """The program's exit code once it has ended (killed if it does not in time)."""
        deadline = time.monotonic() + self.wait_s
        while self._read(deadline) and time.monotonic() < deadline:
            pass
        while (ended := os.waitpid(self.pid, os.WNOHANG))[0] == 0:
            if time.monotonic() >= deadline:
                self.close()
                raise TerminalError(f"did not end; it printed: {self.output[-2000:]!r}")
            time.sleep(0.05)
        return os.waitstatus_to_exitcode(ended[1])

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)

"""Running ``astats`` as operators do: the installed console script, a real engine."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ASTATS = str(Path(sys.executable).parent / "astats")
WAIT_S = 90.0


def astats(
    stack: str,
    *args: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``astats --stack STACK ARGS`` to completion, in ``env`` (this one by default) with a
    wide terminal."""
    return subprocess.run(
        [ASTATS, "--stack", stack, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**(os.environ if env is None else env), "COLUMNS": "250"},
    )


class Running:
    """A long-running ``astats`` (``watch``, ``logs -f``) whose lines a test waits for."""

    def __init__(self, stack: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [ASTATS, "--stack", stack, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.seen: list[tuple[str, str]] = []
        for name in ("stdout", "stderr"):
            threading.Thread(target=self._pump, args=(name,), daemon=True).start()

    def _pump(self, name: str) -> None:
        stream = getattr(self.proc, name)
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))

    def wait_for(self, wanted: Callable[[list[str]], bool], stream: str = "stdout") -> list[str]:
        """Wait until ``wanted`` holds for the lines so far on ``stream``; return those lines."""
        deadline = time.monotonic() + WAIT_S
        while True:
            got = [line for name, line in self.seen if name == stream]
            if wanted(got):
                return got
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"astats never printed what was expected; so far: {self.seen}")
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=0.2))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

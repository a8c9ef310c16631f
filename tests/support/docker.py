"""The Docker CLI as the Docker tests drive it: commands, uploads, waiting for a log line."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path


def docker(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, check=check
    )


def upload(container: str, files: dict[str, tuple[str, int]], scratch: Path) -> None:
    """Copy files in as the provider's `uploads` do: one tar of absolute paths unpacked at /."""
    archive = scratch / "uploads.tar"
    with tarfile.open(archive, "w") as tar:
        for path, (content, mode) in files.items():
            data = content.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    with archive.open("rb") as stream:
        subprocess.run(["docker", "cp", "-", f"{container}:/"], stdin=stream, check=True)


def wait_for_log(container: str, text: str) -> None:
    """Wait until `text` shows in the container's output (a readiness or progress line)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = docker("logs", container)
        if text in logs.stdout + logs.stderr:
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the logs of {container}")

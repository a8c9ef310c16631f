"""A real Docker engine and a tiny local image (no registry here: built with `docker import`)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import in_ci

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = ("sh", "cat", "echo", "env", "sleep", "ls", "test", "id")


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def docker(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, check=check
    )


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        _unavailable("docker CLI not installed (apt-get install -y docker.io)")
    info = docker("info", "--format", "{{.ServerVersion}}", check=False)
    if info.returncode != 0:
        _unavailable(f"no Docker engine answers (start dockerd): {info.stderr.strip()}")


def _static_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        # A dynamic busybox names its loader (PT_INTERP) near the start of the file.
        if path.is_file() and b"/ld-linux" not in path.read_bytes()[:16384]:
            return path
    _unavailable("a static busybox is needed (apt-get install -y busybox-static)")
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def shell_image(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An image with busybox's /bin/sh, like the `sh` of the Alpine-based images."""
    busybox = _static_busybox()
    tag = f"astats-test/busybox:{uuid.uuid4().hex[:8]}"
    rootfs = tmp_path_factory.mktemp("rootfs") / "rootfs.tar"
    with tarfile.open(rootfs, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for directory in ("tmp", "run"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
    docker("import", str(rootfs), tag)
    try:
        yield tag
    finally:
        docker("rmi", "-f", tag, check=False)


@pytest.fixture
def network(docker_engine: None) -> Iterator[str]:
    name = f"astats-test-{uuid.uuid4().hex[:8]}"
    docker("network", "create", "--internal", name)
    try:
        yield name
    finally:
        docker("network", "rm", name, check=False)


def wait_for_log(container: str, text: str) -> None:
    """Wait until `text` shows in the container's output (a readiness or progress line)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = docker("logs", container)
        if text in logs.stdout + logs.stderr:
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the logs of {container}")

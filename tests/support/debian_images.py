"""Local Debian base images for the Docker tests, made without a registry (none is reachable).

``debootstrap --variant=minbase <suite>`` + ``docker import``, kept by tag so only the first run
on a machine pays for the bootstrap. The mirror is the host's own, read from apt's sources.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
IMPORT_CHANGES = (
    # `docker import` records no config, not even a PATH: without one, a later
    # `ENV PATH=$PATH:...` would start with an empty entry.
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["/bin/bash"]',
)


class ImageError(RuntimeError):
    """An image could not be made; the message says which step and why."""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The host's Debian archive mirror, as apt is configured (deb822 or one-line format).

    The main archive is the entry with a plain suite name: the security archive only carries
    `<suite>-security`.
    """
    for path in sources:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and any("-" not in suite for suite in suites.group(1).split()):
                return uris.group(1)
        for line in text.splitlines():
            match = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match and "-" not in match.group(2):
                return match.group(1)
    raise ImageError(f"no Debian archive mirror in {', '.join(map(str, sources))}")


def run_step(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise ImageError(f"{what} failed (exit {result.returncode}):\n{tail}")


@contextlib.contextmanager
def build_lock(name: str) -> Iterator[None]:
    """Serialise builds of one image across processes (parallel test runs)."""
    with (Path(tempfile.gettempdir()) / f"astats-test-{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def built_once_per_run(name: str, tag: str, build: Callable[[], None]) -> str:
    """Run `build` (which makes `tag`) under its lock, once per test run, however many
    pytest-xdist workers ask for it.

    Every worker runs the session fixtures. The first one builds: Docker's layer cache keeps that
    cheap once it has run, and a changed Dockerfile is never hidden behind a stale tag. The
    others find the stamp this run left and the image, and use it. Outside xdist (no run id)
    every call builds, as before.
    """
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    stamp = Path(tempfile.gettempdir()) / f"astats-test-{name}.built"
    with build_lock(name):
        if run and image_exists(tag) and stamp.is_file() and stamp.read_text() == run:
            return tag
        build()
        if run:
            stamp.write_text(run)
    return tag


def debian_base(suite: str, tag: str, scratch: Path) -> str:
    """The tag of a minbase image of `suite`, bootstrapping and importing it unless it exists."""
    if image_exists(tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install -y debootstrap)")
    rootfs = scratch / f"rootfs-{suite}"
    try:
        run_step(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), debian_mirror()],
            f"debootstrap {suite}",
        )
        changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
        with subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        ) as tar:
            imported = subprocess.run(
                ["docker", "import", *changes, "-", tag],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
            )
        if tar.returncode != 0 or imported.returncode != 0:
            raise ImageError(f"docker import of {rootfs} failed: {imported.stderr.strip()}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tag

"""A local image with a current Debian nginx (>= 1.27.3, for `server ... resolve`), made
without a registry: ``debootstrap --variant=minbase`` of Debian unstable + ``docker import``,
then a ``docker build`` that installs nginx and curl. Both are kept by tag, so only the first
run on a machine pays for the bootstrap (~30 s) and the install.

    ./venv/bin/python -m tests.proxy.nginx_image      # build (if missing) and print the tag
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from components.nginx_conf import RESOLVE_MIN_NGINX

SUITE = "sid"
BASE_TAG = f"astats-test/{SUITE}:minbase"
NGINX_TAG = f"astats-test/nginx:{SUITE}"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
LOCK_PATH = Path(tempfile.gettempdir()) / "astats-test-nginx-image.lock"
IMPORT_CHANGES = (
    # `docker import` records no config, not even a PATH.
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["/bin/bash"]',
)
# Unstable's Release files are short-lived, and a mirror snapshot outlives them; the packages
# are still verified against the archive key, only the expiry date is not enforced.
NGINX_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
RUN apt-get -o Acquire::Check-Valid-Until=false update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx curl \\
    && rm -rf /var/lib/apt/lists/*
CMD ["nginx", "-g", "daemon off;"]
"""


class ImageError(RuntimeError):
    """The image could not be made; the message says which step and why."""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The host's Debian archive mirror, as apt is configured (deb822 or one-line format).

    The main archive is the entry with a plain suite name: the security archive only carries
    `<suite>-security`, which has no unstable counterpart.
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


def nginx_version(image: str) -> tuple[int, ...]:
    result = docker("run", "--rm", image, "nginx", "-v", check=False)
    match = re.search(r"nginx/(\d+(?:\.\d+)+)", result.stderr + result.stdout)
    if match is None:
        raise ImageError(f"`nginx -v` in {image} printed no version: {result.stderr.strip()}")
    return tuple(int(part) for part in match.group(1).split("."))


def nginx_image() -> str:
    """The tag of an image whose nginx supports `resolve`, building it unless it exists."""
    if shutil.which("docker") is None:
        raise ImageError("docker is not installed")
    info = docker("info", check=False)
    if info.returncode != 0:
        raise ImageError(f"the Docker engine does not answer: {info.stderr.strip()[-300:]}")
    with _build_lock():
        if not image_exists(NGINX_TAG):
            with tempfile.TemporaryDirectory(prefix="astats-nginx-image-") as scratch:
                base = _base(Path(scratch))
                Path(scratch, "Dockerfile").write_text(NGINX_DOCKERFILE)
                _run(
                    ["docker", "build", "--build-arg", f"BASE={base}", "-t", NGINX_TAG, scratch],
                    f"building {NGINX_TAG}",
                )
    version = nginx_version(NGINX_TAG)
    if version < RESOLVE_MIN_NGINX:
        raise ImageError(
            f"{NGINX_TAG} has nginx {'.'.join(map(str, version))}, older than "
            f"{'.'.join(map(str, RESOLVE_MIN_NGINX))}: remove the image to rebuild it"
        )
    return NGINX_TAG


def _base(scratch: Path) -> str:
    if image_exists(BASE_TAG):
        return BASE_TAG
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install -y debootstrap)")
    rootfs = scratch / "rootfs"
    try:
        _run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), debian_mirror()],
            f"debootstrap {SUITE}",
        )
        changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
        with subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        ) as tar:
            imported = subprocess.run(
                ["docker", "import", *changes, "-", BASE_TAG],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
            )
        if tar.returncode != 0 or imported.returncode != 0:
            raise ImageError(f"docker import of {rootfs} failed: {imported.stderr.strip()}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_TAG


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    # Parallel test processes would otherwise each bootstrap the same suite.
    with LOCK_PATH.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise ImageError(f"{what} failed (exit {result.returncode}):\n{tail}")


if __name__ == "__main__":
    tag = nginx_image()
    print(tag, "nginx", ".".join(map(str, nginx_version(tag))))

"""A local image with a current Debian nginx (>= 1.27.3, for `server ... resolve`), made
without a registry: ``debootstrap --variant=minbase`` of Debian unstable + ``docker import``,
then a ``docker build`` that installs nginx and curl. Both are kept by tag, so only the first
run on a machine pays for the bootstrap (~30 s) and the install.

    ./venv/bin/python -m tests.proxy.nginx_image      # build (if missing) and print the tag
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from tests.support.debian_images import (
    ImageError,
    build_lock,
    debian_base,
    docker,
    image_exists,
    run_step,
)

SUITE = "sid"
# The stack's default image is nginx 1.30: the stand-in must be of the current line too.
CURRENT_NGINX = (1, 27, 3)
BASE_TAG = f"astats-test/{SUITE}:minbase"
NGINX_TAG = f"astats-test/nginx:{SUITE}"
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
    with build_lock("nginx-image"):
        if not image_exists(NGINX_TAG):
            with tempfile.TemporaryDirectory(prefix="astats-nginx-image-") as scratch:
                base = debian_base(SUITE, BASE_TAG, Path(scratch))
                Path(scratch, "Dockerfile").write_text(NGINX_DOCKERFILE)
                run_step(
                    ["docker", "build", "--build-arg", f"BASE={base}", "-t", NGINX_TAG, scratch],
                    f"building {NGINX_TAG}",
                )
    version = nginx_version(NGINX_TAG)
    if version < CURRENT_NGINX:
        raise ImageError(
            f"{NGINX_TAG} has nginx {'.'.join(map(str, version))}, older than "
            f"{'.'.join(map(str, CURRENT_NGINX))}: remove the image to rebuild it"
        )
    return NGINX_TAG


if __name__ == "__main__":
    tag = nginx_image()
    print(tag, "nginx", ".".join(map(str, nginx_version(tag))))

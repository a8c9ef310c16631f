"""A real Docker engine, a tiny local image (no registry here: built with `docker import`), the
test images and one test's network, database and volumes."""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker import images, python_image
from tests.e2e import images as e2e_images
from tests.proxy.nginx_image import nginx_image
from tests.support.ci import unavailable
from tests.support.debian_images import built_once_per_run, image_exists
from tests.support.docker import docker
from tests.support.docker_env import BackendImages, Env, Images

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = ("sh", "cat", "echo", "env", "sleep", "ls", "test", "id", "base64", "mv", "rm")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        unavailable("docker CLI not installed (apt-get install -y docker.io)")
    info = docker("info", "--format", "{{.ServerVersion}}", check=False)
    if info.returncode != 0:
        unavailable(f"no Docker engine answers (start dockerd): {info.stderr.strip()}")


def _static_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        # A dynamic busybox names its loader (PT_INTERP) near the start of the file.
        if path.is_file() and b"/ld-linux" not in path.read_bytes()[:16384]:
            return path
    unavailable("a static busybox is needed (apt-get install -y busybox-static)")


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


@pytest.fixture(scope="session")
def test_images(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Images:
    if not image_exists(images.BASE_TAG):
        if shutil.which("debootstrap") is None:
            unavailable("debootstrap is needed for the base image (apt-get install -y debootstrap)")
        if os.geteuid() != 0:
            unavailable("debootstrap needs root to build the base image")
    # A failure from here on (bootstrap, the stand-in, the repo's Dockerfile) fails every test.
    base = images.bookworm_base(tmp_path_factory.mktemp("bookworm"))
    postgres = images.postgres_standin(base)
    database = images.database_image(postgres)
    return Images(postgres=postgres, backup=images.backup_image(database), database=database)


@pytest.fixture
def env(test_images: Images, network: str) -> Iterator[Env]:
    environment = Env(test_images, network)
    try:
        yield environment
    finally:
        environment.close()


@pytest.fixture(scope="session")
def backend_images(test_images: Images) -> BackendImages:
    # test_images has made (or found) the bookworm base; a failed build fails every test.
    python = python_image.python_standin(images.BASE_TAG)
    return BackendImages(python=python, backend=python_image.backend_image(python))


@pytest.fixture(scope="session")
def stack_images(test_images: Images, backend_images: BackendImages) -> dict[str, str]:
    """A stand-in image for each service of the stack, by its `astats.service`."""

    def node_image() -> None:
        e2e_images.node_standin(images.BASE_TAG)

    def official_nginx() -> None:
        e2e_images.nginx_standin(nginx_image())

    node = built_once_per_run("node-standin-image", e2e_images.NODE_TAG, node_image)
    nginx = built_once_per_run("nginx-official-image", e2e_images.NGINX_TAG, official_nginx)
    return {
        "db": test_images.database,
        "backend": backend_images.backend,
        "frontend": images.frontend_standin(node),
        "nginx": nginx,
        "backup": test_images.backup,
    }

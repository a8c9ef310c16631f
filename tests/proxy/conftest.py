"""Fixtures: one demo backend and one frontend stand-in per session, nginx per module.

`nginx` parametrizes a test over the nginx programs it runs against: Debian's own nginx 1.22,
and a current nginx from Debian unstable in a local container image (as the stack runs it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config import NginxSettings
from components.nginx_conf import Upstreams
from tests.proxy import harness, nginx_image, tls_pki
from tests.support.ci import unavailable
from tests.support.debian_images import ImageError

NGINX_RUNNERS = (
    pytest.param("local", id="debian"),
    pytest.param("container", id="sid"),
)


def require_nginx() -> str:
    """nginx's path; a missing nginx fails the test under CI and skips it elsewhere."""
    try:
        return harness.nginx_binary()
    except harness.NginxUnavailableError as exc:
        unavailable(f"nginx unavailable: {exc}")


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_nginx()


@pytest.fixture(scope="session")
def local_nginx(nginx_bin: str) -> harness.LocalNginx:
    return harness.LocalNginx(nginx_bin)


@pytest.fixture(scope="session")
def container_nginx() -> harness.ContainerNginx:
    """A current nginx in a local image; docker or debootstrap missing fails under CI."""
    try:
        return harness.ContainerNginx(nginx_image.nginx_image())
    except ImageError as exc:
        unavailable(f"no nginx >= 1.27.3 image: {exc}")


@pytest.fixture(scope="session", params=NGINX_RUNNERS)
def nginx(request: pytest.FixtureRequest) -> harness.NginxRunner:
    runner: harness.NginxRunner = request.getfixturevalue(f"{request.param}_nginx")
    return runner


@pytest.fixture(scope="session")
def backend_port() -> Iterator[int]:
    port = harness.free_port()
    with harness.run_backend(port):
        yield port


@pytest.fixture(scope="session")
def frontend_port() -> Iterator[int]:
    with harness.run_frontend_stand_in() as port:
        yield port


@pytest.fixture(scope="session")
def loopback_upstreams(backend_port: int, frontend_port: int) -> Upstreams:
    return Upstreams(backend=f"127.0.0.1:{backend_port}", frontend=f"127.0.0.1:{frontend_port}")


@pytest.fixture(scope="module")
def proxy(nginx: harness.NginxRunner, loopback_upstreams: Upstreams) -> Iterator[harness.Nginx]:
    """nginx with the default settings in front of the loopback backend and frontend."""
    with harness.run_nginx(
        NginxSettings(), harness.DEFAULT_PREFIXES, loopback_upstreams, runner=nginx
    ) as running:
        yield running


@pytest.fixture(scope="session")
def pki() -> tls_pki.Pki:
    """A test CA and a certificate for localhost and 127.0.0.1 that nginx serves."""
    return tls_pki.make_pki()


@pytest.fixture(scope="session")
def test_ca(pki: tls_pki.Pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test CA's certificate file, for clients to verify nginx with."""
    return pki.write_ca(tmp_path_factory.mktemp("test-ca"))

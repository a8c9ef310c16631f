"""Fixtures: one demo backend and one frontend stand-in per session, nginx per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from components.nginx_conf import Upstreams
from tests.proxy import harness


def require_nginx() -> str:
    """nginx's path; a missing nginx fails the test under CI and skips it elsewhere."""
    try:
        return harness.nginx_binary()
    except harness.NginxUnavailableError as exc:
        if harness.in_ci():
            pytest.fail(f"nginx unavailable under CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_nginx()


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

"""nginx keeps starting and serving while an upstream is down, unresolvable or being replaced.

In Docker a replaced backend is a new container sharing the `backend` alias with the old one
until the old one is removed, and the embedded DNS answers with every holder of the alias. A
fake DNS server plays that role here, with addresses on loopback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from components.config import BackendSettings, BuildSettings, NginxSettings
from components.nginx_conf import Upstreams
from tests.proxy import harness

DEFAULT_PREFIXES = BackendSettings(build=BuildSettings(context=".")).api_prefixes
RESOLVER_VALID_S = 1


@pytest.fixture
def dns() -> Iterator[harness.FakeDns]:
    server = harness.FakeDns()
    yield server
    server.close()


def _eventually(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_healthz_answers_while_the_backend_is_down_and_api_recovers(
    nginx: harness.NginxVariant, frontend_port: int
) -> None:
    backend_port = harness.free_port()
    upstreams = Upstreams(f"127.0.0.1:{backend_port}", f"127.0.0.1:{frontend_port}")
    with harness.run_nginx(NginxSettings(), DEFAULT_PREFIXES, upstreams, variant=nginx) as proxy:
        assert httpx.get(proxy.url("/healthz")).status_code == 200
        assert httpx.get(proxy.url("/api/whoami")).status_code == 502
        assert httpx.get(proxy.url("/")).status_code == 200, "frontend unaffected"

        with harness.run_backend(backend_port):
            # A single upstream server that failed is not held down by fail_timeout
            # (nginx resets a lone peer), so the first request after the start succeeds.
            assert httpx.get(proxy.url("/api/whoami")).status_code == 200

        assert httpx.get(proxy.url("/api/whoami")).status_code == 502
        assert httpx.get(proxy.url("/healthz")).status_code == 200


def test_nginx_starts_with_an_unresolvable_backend_name_and_picks_it_up_later(
    nginx: harness.NginxVariant, dns: harness.FakeDns, backend_port: int, frontend_port: int
) -> None:
    dns.set("frontend", ["127.0.0.1"])
    upstreams = Upstreams(f"backend:{backend_port}", f"frontend:{frontend_port}")
    with harness.run_nginx(
        NginxSettings(resolver_valid_s=RESOLVER_VALID_S),
        DEFAULT_PREFIXES,
        upstreams,
        resolver=dns.address,
        variant=nginx,
    ) as proxy:
        assert httpx.get(proxy.url("/healthz")).status_code == 200
        # In "resolve" mode the workers ask the resolver only once they run, so the frontend
        # may trail /healthz by one DNS round trip.
        assert _eventually(
            lambda: httpx.get(proxy.url("/")).headers.get("x-served-by") == "frontend",
            timeout_s=RESOLVER_VALID_S + 3,
        ), proxy.log()
        assert httpx.get(proxy.url("/api/whoami")).status_code == 502

        dns.set("backend", ["127.0.0.1"])
        assert _eventually(
            lambda: httpx.get(proxy.url("/api/whoami")).status_code == 200,
            timeout_s=RESOLVER_VALID_S + 3,
        ), proxy.log()


def test_replacing_the_backend_container_fails_no_request(
    nginx: harness.NginxVariant, dns: harness.FakeDns, frontend_port: int
) -> None:
    old_ip, new_ip = "127.0.0.3", "127.0.0.4"
    port = harness.free_port(old_ip)
    dns.set("frontend", ["127.0.0.1"])
    dns.set("backend", [old_ip])
    upstreams = Upstreams(f"backend:{port}", f"frontend:{frontend_port}")
    statuses: list[int] = []
    stop = threading.Event()

    with harness.run_nginx(
        NginxSettings(resolver_valid_s=RESOLVER_VALID_S),
        DEFAULT_PREFIXES,
        upstreams,
        resolver=dns.address,
        variant=nginx,
    ) as proxy:

        def traffic() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    statuses.append(client.get(proxy.url("/api/whoami")).status_code)

        with harness.run_backend(port, host=old_ip) as old:
            poller = threading.Thread(target=traffic, daemon=True)
            poller.start()
            with harness.run_backend(port, host=new_ip) as new:
                dns.set("backend", [old_ip, new_ip])
                # nginx's cache counts whole seconds, so a changed answer shows within
                # valid + 1 s in either mode; Docker's overlap of the two containers has to
                # outlast that, and the old one is only stopped once nginx uses the new one.
                assert _eventually(
                    lambda: f"{new_ip}:{port}" in (proxy.root / "access.log").read_text(),
                    timeout_s=RESOLVER_VALID_S + 2,
                ), f"nginx never sent a request to the new address:\n{proxy.log()}"
                old.terminate()
                old.wait(timeout=10)
                time.sleep(0.5)
                dns.set("backend", [new_ip])
                time.sleep(RESOLVER_VALID_S + 0.5)
                stop.set()
                poller.join(timeout=10)
                assert new.poll() is None
        upstream_log = (proxy.root / "access.log").read_text()

    assert len(statuses) > 20, "too little traffic to prove anything"
    assert set(statuses) == {200}, f"failed requests during the swap: {statuses.count(502)}"
    assert f"127.0.0.4:{port}" in upstream_log, "the new container never served"
    assert f"127.0.0.3:{port}" in upstream_log

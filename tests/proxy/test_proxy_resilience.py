"""nginx keeps serving while an upstream is down, and moves traffic between containers only
when the traffic switch (components/files/switch-upstream.sh) tells it to.

In Docker the old and the new backend are two containers with their own addresses; here they are
two Uvicorn servers on two loopback addresses, and the switch runs where nginx runs (on this
host, or inside the nginx container) exactly as `pulumi up` runs it through `docker exec`.
"""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from components.config import BackendSettings, BuildSettings, NginxSettings
from components.nginx_conf import Upstreams
from tests.proxy import harness
from tests.support.resend import get_as_a_browser

DEFAULT_PREFIXES = BackendSettings(build=BuildSettings(context=".")).api_prefixes
OLD_IP, NEW_IP = "127.0.0.3", "127.0.0.4"


class Load:
    """Requests to /api/whoami one after another, as a browser sends them, until stopped: every
    answer's status (or the error instead of one), and how many had to be resent."""

    def __init__(self, proxy: harness.Nginx) -> None:
        self.proxy = proxy
        self.results: list[int | str] = []
        self.resent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.is_set():
                try:
                    answer, resent = get_as_a_browser(client, self.proxy.url("/api/whoami"))
                except httpx.HTTPError as error:
                    self.results.append(f"{type(error).__name__}: {error}")
                    continue
                self.resent += resent
                self.results.append(answer.status_code)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def failed(self) -> list[int | str]:
        return [result for result in self.results if result != 200]


def switched_proxy(
    nginx: harness.NginxRunner, backend: str, frontend_port: int
) -> contextlib.AbstractContextManager[harness.Nginx]:
    return harness.run_nginx(
        NginxSettings(),
        DEFAULT_PREFIXES,
        None,
        runner=nginx,
        upstream_files={
            "backend": f"server {backend};",
            "frontend": f"server 127.0.0.1:{frontend_port};",
        },
    )


def test_healthz_answers_while_the_backend_is_down_and_api_recovers(
    nginx: harness.NginxRunner, frontend_port: int
) -> None:
    backend_port = harness.free_port()
    upstreams = Upstreams(f"127.0.0.1:{backend_port}", f"127.0.0.1:{frontend_port}")
    with harness.run_nginx(NginxSettings(), DEFAULT_PREFIXES, upstreams, runner=nginx) as proxy:
        assert httpx.get(proxy.url("/healthz")).status_code == 200
        assert httpx.get(proxy.url("/api/whoami")).status_code == 502
        assert httpx.get(proxy.url("/")).status_code == 200, "frontend unaffected"

        with harness.run_backend(backend_port):
            # A single upstream server that failed is not held down by fail_timeout
            # (nginx resets a lone peer), so the first request after the start succeeds.
            assert httpx.get(proxy.url("/api/whoami")).status_code == 200

        assert httpx.get(proxy.url("/api/whoami")).status_code == 502
        assert httpx.get(proxy.url("/healthz")).status_code == 200


def test_a_switch_under_load_moves_traffic_without_failing_a_request(
    nginx: harness.NginxRunner, frontend_port: int
) -> None:
    port = harness.free_port(OLD_IP)
    with (
        harness.run_backend(port, host=OLD_IP) as old,
        switched_proxy(nginx, f"{OLD_IP}:{port}", frontend_port) as proxy,
        harness.run_backend(port, host=NEW_IP) as new,
    ):
        with Load(proxy) as load:
            time.sleep(0.5)
            switched = proxy.switch("backend", f"server {NEW_IP}:{port};")
            # As at the end of a rollout: the old container is stopped after the switch.
            old.terminate()
            old.wait(timeout=10)
            time.sleep(1)
        assert switched.returncode == 0, switched.stderr + proxy.log()
        assert f"serving server {NEW_IP}:{port};" in switched.stdout
        assert (proxy.upstream_dir / "backend.conf").read_text() == f"server {NEW_IP}:{port};\n"
        assert new.poll() is None
        access = (proxy.root / "access.log").read_text().splitlines()
    assert len(load.results) > 20, "too little traffic to prove anything"
    assert load.failed == [], f"{len(load.failed)} failed requests: {set(load.failed)}"
    # One reload closes the load's one kept-alive connection at most once.
    assert load.resent <= 1, f"{load.resent} requests resent"
    assert f"{NEW_IP}:{port}" in access[-1], "the last requests reach the new backend"
    assert any(f"{OLD_IP}:{port}" in line for line in access), "the old one served before"


def test_a_switch_nginx_refuses_leaves_traffic_where_it_was(
    nginx: harness.NginxRunner, backend_port: int, frontend_port: int
) -> None:
    with switched_proxy(nginx, f"127.0.0.1:{backend_port}", frontend_port) as proxy:
        refused = proxy.switch("backend", "server no-such-container.invalid:8000;")
        assert refused.returncode == 1
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert (
            "switch-upstream: backend: nginx refused the new upstream, traffic stays where it was"
            in refused.stderr
        )
        kept = (proxy.upstream_dir / "backend.conf").read_text()
        assert kept == f"server 127.0.0.1:{backend_port};\n"
        assert httpx.get(proxy.url("/api/whoami")).status_code == 200
        # A switch with nothing to switch to changes nothing either.
        empty = proxy.switch("backend", "")
        assert empty.returncode == 1
        assert "no server line on stdin" in empty.stderr
        assert (proxy.upstream_dir / "backend.conf").read_text() == kept


def test_websockets_on_the_old_backend_live_until_it_stops_then_close_with_1012(
    nginx: harness.NginxRunner, frontend_port: int
) -> None:
    port = harness.free_port(OLD_IP)
    with (
        harness.run_backend(port, host=OLD_IP) as old,
        switched_proxy(nginx, f"{OLD_IP}:{port}", frontend_port) as proxy,
        harness.run_backend(port, host=NEW_IP),
        connect(proxy.ws_url("/ws/dev-cockpit"), ping_interval=None, open_timeout=5) as socket,
    ):
        switched = proxy.switch("backend", f"server {NEW_IP}:{port};")
        assert switched.returncode == 0, switched.stderr
        # nginx's old worker keeps the open socket on the old backend...
        socket.send("still here")
        assert socket.recv(timeout=5) == "still here"
        # ...until that backend stops, which closes it as a restart (1012): the client
        # reconnects and lands on the new one.
        old.terminate()
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        with connect(proxy.ws_url("/ws/dev-cockpit"), open_timeout=5) as again:
            again.send("reconnected")
            assert again.recv(timeout=5) == "reconnected"
        assert f"{NEW_IP}:{port}" in (proxy.root / "access.log").read_text().splitlines()[-1]

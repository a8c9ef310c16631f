"""The dev cockpit WebSocket through a real nginx: upgrade, both directions, broadcast, and
the idle timeout taken from the WebSocket settings rather than the HTTP one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from components.config import NginxSettings, WebSocketSettings
from components.nginx_conf import Upstreams
from tests.proxy import harness
from tests.proxy.harness import DEFAULT_PREFIXES

COCKPIT = "/ws/dev-cockpit"
HTTP_TIMEOUT_S = 1
WS_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def short_timeout_proxy(
    nginx: harness.NginxRunner, loopback_upstreams: Upstreams
) -> Iterator[harness.Nginx]:
    """Timeouts scaled from an hour to seconds; the HTTP one deliberately shorter still."""
    settings = NginxSettings(
        proxy_read_timeout_s=HTTP_TIMEOUT_S,
        websocket=WebSocketSettings(read_timeout_s=WS_TIMEOUT_S, send_timeout_s=WS_TIMEOUT_S),
    )
    with harness.run_nginx(settings, DEFAULT_PREFIXES, loopback_upstreams, runner=nginx) as running:
        yield running


def _open(nginx: harness.Nginx) -> ClientConnection:
    # No client pings: they would count as traffic and hide the idle timeout.
    return connect(nginx.ws_url(COCKPIT), ping_interval=None, open_timeout=5, close_timeout=1)


def test_messages_travel_both_ways_through_the_upgrade(proxy: harness.Nginx) -> None:
    with _open(proxy) as socket:
        assert socket.response is not None
        assert socket.response.status_code == 101
        for message in ("hello", "second message", "x" * 100_000):
            socket.send(message)
            assert socket.recv(timeout=5) == message


def test_broadcast_reaches_every_connected_client(proxy: harness.Nginx) -> None:
    with _open(proxy) as alice, _open(proxy) as bob, _open(proxy) as carol:
        alice.send("broadcast: deploy finished")
        for client in (alice, bob, carol):
            assert client.recv(timeout=5) == "broadcast: deploy finished"
        bob.send("just for bob")
        assert bob.recv(timeout=5) == "just for bob"
        with pytest.raises(TimeoutError):
            carol.recv(timeout=0.3)


def test_idle_socket_outlives_the_http_timeout_but_not_its_own(
    short_timeout_proxy: harness.Nginx,
) -> None:
    with _open(short_timeout_proxy) as socket:
        time.sleep(HTTP_TIMEOUT_S + 0.5)
        socket.send("still there?")
        assert socket.recv(timeout=2) == "still there?"

        silent_since = time.monotonic()
        with pytest.raises(ConnectionClosed):
            socket.recv(timeout=WS_TIMEOUT_S + 3)
        idle = time.monotonic() - silent_since
    assert WS_TIMEOUT_S - 0.2 <= idle <= WS_TIMEOUT_S + 1.5, f"cut after {idle:.2f}s"


def test_plain_http_is_not_upgraded(proxy: harness.Nginx) -> None:
    response = httpx.get(proxy.url("/api/whoami"))
    assert response.status_code == 200
    headers = response.json()["headers"]
    # HTTP/1.1 without a Connection header keeps the upstream connection in the pool, and
    # a client's upgrade request on an API path must not reach a pooled connection.
    assert "connection" not in headers
    asked = httpx.get(
        proxy.url("/api/whoami"), headers={"Upgrade": "websocket", "Connection": "Upgrade"}
    )
    assert asked.status_code == 200
    assert "upgrade" not in asked.json()["headers"]
    assert "connection" not in asked.json()["headers"]

"""The rendered nginx.conf is accepted by a real nginx and is a pure function of its inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import NginxSettings, WebSocketSettings
from components.nginx import LISTEN_PORT, RUNTIME
from components.nginx_conf import (
    UPSTREAM_KEEPALIVE,
    NginxRuntime,
    SwitchedUpstreams,
    Upstreams,
    render_nginx_conf,
)
from components.switch import ASSETS_DIR, UPSTREAM_DIR
from tests.proxy import harness
from tests.proxy.harness import DEFAULT_PREFIXES

PRODUCTION_RUNTIME = NginxRuntime()
SWITCHED = SwitchedUpstreams(UPSTREAM_DIR)
LOOPBACK = Upstreams("127.0.0.1:8000", "127.0.0.1:3000")
CUSTOM = NginxSettings(
    client_max_body_size="512k",
    proxy_read_timeout_s=120,
    gzip=False,
    static_cache_days=0,
    websocket=WebSocketSettings(path="/ws/cockpit", read_timeout_s=86_400, send_timeout_s=30),
)


def _render(
    settings: NginxSettings,
    prefixes: tuple[str, ...],
    runtime: NginxRuntime = PRODUCTION_RUNTIME,
) -> str:
    return render_nginx_conf(settings, prefixes, SWITCHED, runtime=runtime, assets_root=ASSETS_DIR)


def _block(config: str, opening: str) -> str:
    return config.split(opening + " {")[1].split("}")[0]


@pytest.mark.parametrize(
    ("settings", "prefixes", "switched"),
    [
        pytest.param(NginxSettings(), DEFAULT_PREFIXES, True, id="defaults-switched"),
        pytest.param(CUSTOM, ("/v2/", "/admin", "/"), True, id="custom-switched"),
        pytest.param(NginxSettings(), DEFAULT_PREFIXES, False, id="defaults-static"),
    ],
)
def test_nginx_accepts_the_rendered_config(
    nginx: harness.NginxRunner,
    settings: NginxSettings,
    prefixes: tuple[str, ...],
    switched: bool,
) -> None:
    def render(runtime: NginxRuntime) -> str:
        if not switched:
            return render_nginx_conf(settings, prefixes, LOOPBACK, runtime=runtime)
        # The switch's files, as it writes them, inside the throwaway prefix.
        upstreams = Path(runtime.temp_dir) / "upstreams"
        upstreams.mkdir()
        for role, address in (("backend", LOOPBACK.backend), ("frontend", LOOPBACK.frontend)):
            (upstreams / f"{role}.conf").write_text(f"server {address};\n")
        return render_nginx_conf(
            settings,
            prefixes,
            SwitchedUpstreams(str(upstreams)),
            runtime=runtime,
            assets_root=str(runtime.temp_dir),
        )

    result = harness.nginx_check(render, nginx)
    assert result.returncode == 0, f"{nginx.label}: {result.stderr}"


def test_each_upstream_is_the_switch_file_with_pooled_connections() -> None:
    config = _render(NginxSettings(), DEFAULT_PREFIXES)
    backend = _block(config, "upstream backend_upstream")
    assert f"include {UPSTREAM_DIR}/backend.conf;" in backend
    assert f"keepalive {UPSTREAM_KEEPALIVE};" in backend
    frontend = _block(config, "upstream frontend_upstream")
    assert f"include {UPSTREAM_DIR}/frontend.conf;" in frontend
    # No name is resolved while nginx runs: the switch's reload is the only way a new
    # container gets traffic.
    assert "resolver" not in config and "resolve;" not in config
    server = config.split("server {")[1].split("location")[0]
    assert "proxy_http_version 1.1;" in server
    assert 'proxy_set_header Connection "";' in server
    assert "Upgrade" not in server, "plain HTTP must not switch protocols"
    websocket = _block(config, 'location ^~ "/ws/dev-cockpit"')
    assert "proxy_pass http://backend_upstream;" in websocket
    assert "proxy_set_header Upgrade $http_upgrade;" in websocket
    assert "proxy_set_header Connection $connection_upgrade;" in websocket
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in websocket
    assert "proxy_pass http://backend_upstream;" in _block(config, 'location ^~ "/api/"')
    assert "proxy_pass http://frontend_upstream;" in _block(config, "location /")


def test_static_assets_come_from_recent_releases_then_the_frontend() -> None:
    config = _render(NginxSettings(), DEFAULT_PREFIXES)
    static = _block(config, 'location ^~ "/_next/static/"')
    assert f"root {ASSETS_DIR};" in static
    assert "try_files $uri @frontend_static;" in static
    assert "immutable" in static
    fallback = _block(config, "location @frontend_static")
    assert "proxy_pass http://frontend_upstream;" in fallback
    assert "immutable" in fallback
    without = render_nginx_conf(NginxSettings(), DEFAULT_PREFIXES, LOOPBACK)
    assert "@frontend_static" not in without
    assert "proxy_pass http://frontend_upstream;" in _block(without, 'location ^~ "/_next/static/"')


def test_loopback_upstreams_render_literal_servers() -> None:
    config = render_nginx_conf(NginxSettings(), DEFAULT_PREFIXES, LOOPBACK)
    backend = _block(config, "upstream backend_upstream")
    assert "server 127.0.0.1:8000;" in backend
    assert f"keepalive {UPSTREAM_KEEPALIVE};" in backend


def test_rendering_is_deterministic() -> None:
    first = _render(CUSTOM, ("/v2/", "/admin"))
    assert first == _render(CUSTOM, ("/v2/", "/admin"))
    assert first != _render(NginxSettings(), ("/v2/", "/admin"))


def test_settings_reach_the_config() -> None:
    config = _render(CUSTOM, ("/v2/",))
    assert "client_max_body_size 512k;" in config
    assert "gzip off;" in config
    assert "proxy_read_timeout 86400s;" in config
    assert "proxy_send_timeout 30s;" in config
    assert "proxy_read_timeout 120s;" in config
    assert 'Cache-Control "no-cache"' in config
    assert 'location ^~ "/ws/cockpit"' in config


def test_defaults_fit_the_official_nginx_image_run_as_its_nginx_user() -> None:
    config = render_nginx_conf(
        NginxSettings(), DEFAULT_PREFIXES, SWITCHED, listen_port=LISTEN_PORT, runtime=RUNTIME
    )
    # The master is not root: no `user` line (nginx would only warn that it cannot switch).
    assert config.startswith("worker_processes auto;\n")
    assert "pid /var/run/nginx.pid;" in config
    assert "client_body_temp_path /var/cache/nginx/client_temp;" in config
    assert "include /etc/nginx/mime.types;" in config
    # Above 1024: an unprivileged user binds it without NET_BIND_SERVICE.
    assert LISTEN_PORT > 1024 and f"listen {LISTEN_PORT};" in config
    assert NginxRuntime() == RUNTIME and RUNTIME.user is None


def test_default_websocket_timeouts_far_exceed_an_hour_of_silence_budget() -> None:
    config = _render(NginxSettings(), DEFAULT_PREFIXES)
    ws_block = config.split('location ^~ "/ws/dev-cockpit" {')[1].split("}")[0]
    assert "proxy_read_timeout 3600s;" in ws_block
    assert "proxy_send_timeout 3600s;" in ws_block
    assert "proxy_buffering off;" in ws_block


@pytest.mark.parametrize("address", ["backend", "backend:0", "back end:80", "http://b:80", ":80"])
def test_upstreams_must_be_host_and_port(address: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        Upstreams(backend=address, frontend="frontend:3000")


def test_duplicate_prefixes_render_one_location() -> None:
    config = _render(NginxSettings(), ("/api/", "/api/"))
    assert config.count('location ^~ "/api/"') == 1

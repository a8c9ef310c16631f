"""The rendered nginx.conf is accepted by a real nginx and is a pure function of its inputs."""

from __future__ import annotations

import pytest

from components.config import NginxSettings, WebSocketSettings
from components.nginx_conf import (
    UPSTREAM_KEEPALIVE,
    NginxRuntime,
    UpstreamMode,
    Upstreams,
    render_nginx_conf,
)
from tests.proxy import harness
from tests.proxy.harness import DEFAULT_PREFIXES

PRODUCTION_RUNTIME = NginxRuntime()
DOCKER_UPSTREAMS = Upstreams(backend="backend:8000", frontend="frontend:3000")
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
    resolver: str | None,
    runtime: NginxRuntime = PRODUCTION_RUNTIME,
    upstream_mode: UpstreamMode = "resolve",
) -> str:
    return render_nginx_conf(
        settings.model_copy(update={"upstream_mode": upstream_mode}),
        prefixes,
        DOCKER_UPSTREAMS if resolver else Upstreams("127.0.0.1:8000", "127.0.0.1:3000"),
        resolver=resolver,
        runtime=runtime,
    )


def _block(config: str, opening: str) -> str:
    return config.split(opening + " {")[1].split("}")[0]


@pytest.mark.parametrize(
    ("settings", "prefixes", "resolver"),
    [
        pytest.param(NginxSettings(), DEFAULT_PREFIXES, "127.0.0.11", id="defaults-docker-dns"),
        pytest.param(CUSTOM, ("/v2/", "/admin", "/"), "127.0.0.11:53", id="custom-docker-dns"),
        pytest.param(NginxSettings(), DEFAULT_PREFIXES, None, id="defaults-static"),
    ],
)
def test_nginx_accepts_the_rendered_config(
    nginx: harness.NginxVariant,
    settings: NginxSettings,
    prefixes: tuple[str, ...],
    resolver: str | None,
) -> None:
    result = harness.nginx_check(
        lambda runtime: _render(settings, prefixes, resolver, runtime, nginx.upstream_mode),
        nginx.runner,
    )
    assert result.returncode == 0, f"{nginx}: {result.stderr}"


def test_config_with_unresolvable_upstream_names_still_passes_nginx_t(
    nginx: harness.NginxVariant,
) -> None:
    """`backend` resolves nowhere on this machine: nginx must not need it at startup."""
    result = harness.nginx_check(
        lambda runtime: _render(
            NginxSettings(), DEFAULT_PREFIXES, "127.0.0.11", runtime, nginx.upstream_mode
        ),
        nginx.runner,
    )
    assert result.returncode == 0, f"{nginx}: {result.stderr}"


def test_nginx_1_22_cannot_run_the_resolve_form(local_nginx: harness.LocalNginx) -> None:
    """Why Debian's own nginx is only tested in "variable" mode (see docs/proxy.md)."""
    result = harness.nginx_check(
        lambda runtime: _render(NginxSettings(), DEFAULT_PREFIXES, "127.0.0.11", runtime),
        local_nginx,
    )
    if result.returncode == 0:
        pytest.skip(f"{local_nginx.label} supports resolve: test it in both modes")
    assert 'invalid parameter "resolve"' in result.stderr


def test_resolve_mode_keeps_upstream_connections_alive_and_re_resolves() -> None:
    config = _render(NginxSettings(), DEFAULT_PREFIXES, "127.0.0.11")
    backend = _block(config, "upstream backend_upstream")
    assert "zone backend_upstream 64k;" in backend
    assert "server backend:8000 resolve;" in backend
    assert f"keepalive {UPSTREAM_KEEPALIVE};" in backend
    assert "server frontend:3000 resolve;" in _block(config, "upstream frontend_upstream")
    assert "$backend_upstream" not in config
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


def test_resolve_mode_without_resolver_uses_static_addresses() -> None:
    config = _render(NginxSettings(), DEFAULT_PREFIXES, None)
    backend = _block(config, "upstream backend_upstream")
    assert "server 127.0.0.1:8000;" in backend
    assert f"keepalive {UPSTREAM_KEEPALIVE};" in backend
    assert "resolve" not in config and "zone" not in config


def test_variable_mode_resolves_per_request_without_upstream_blocks() -> None:
    config = _render(NginxSettings(), DEFAULT_PREFIXES, "127.0.0.11", upstream_mode="variable")
    assert "\n    upstream " not in config
    assert "set $backend_upstream backend:8000;" in config
    assert "proxy_pass http://$backend_upstream;" in _block(config, 'location ^~ "/api/"')
    assert "proxy_set_header Connection $connection_upgrade;" in config
    assert 'Connection ""' not in config


def test_default_upstream_mode_is_variable() -> None:
    config = render_nginx_conf(NginxSettings(), DEFAULT_PREFIXES, DOCKER_UPSTREAMS)
    assert "set $backend_upstream backend:8000;" in config
    assert "resolve;" not in config


def test_rendering_is_deterministic() -> None:
    first = _render(CUSTOM, ("/v2/", "/admin"), "127.0.0.11")
    assert first == _render(CUSTOM, ("/v2/", "/admin"), "127.0.0.11")
    assert first != _render(NginxSettings(), ("/v2/", "/admin"), "127.0.0.11")


def test_settings_reach_the_config() -> None:
    config = _render(CUSTOM, ("/v2/",), "127.0.0.11")
    assert "client_max_body_size 512k;" in config
    assert "gzip off;" in config
    assert "proxy_read_timeout 86400s;" in config
    assert "proxy_send_timeout 30s;" in config
    assert "proxy_read_timeout 120s;" in config
    assert 'Cache-Control "no-cache"' in config
    assert 'location ^~ "/ws/cockpit"' in config


def test_defaults_fit_the_official_nginx_image() -> None:
    config = render_nginx_conf(NginxSettings(), DEFAULT_PREFIXES, DOCKER_UPSTREAMS)
    assert config.startswith("user nginx;\n")
    assert "pid /var/run/nginx.pid;" in config
    assert "client_body_temp_path /var/cache/nginx/client_temp;" in config
    assert "include /etc/nginx/mime.types;" in config
    assert "resolver 127.0.0.11 valid=10s ipv6=off;" in config
    assert "listen 80;" in config
    assert NginxRuntime().user == "nginx"


def test_default_websocket_timeouts_far_exceed_an_hour_of_silence_budget() -> None:
    config = _render(NginxSettings(), DEFAULT_PREFIXES, "127.0.0.11")
    ws_block = config.split('location ^~ "/ws/dev-cockpit" {')[1].split("}")[0]
    assert "proxy_read_timeout 3600s;" in ws_block
    assert "proxy_send_timeout 3600s;" in ws_block
    assert "proxy_buffering off;" in ws_block


@pytest.mark.parametrize("address", ["backend", "backend:0", "back end:80", "http://b:80", ":80"])
def test_upstreams_must_be_host_and_port(address: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        Upstreams(backend=address, frontend="frontend:3000")


def test_duplicate_prefixes_render_one_location() -> None:
    config = render_nginx_conf(NginxSettings(), ("/api/", "/api/"), DOCKER_UPSTREAMS)
    assert config.count('location ^~ "/api/"') == 1

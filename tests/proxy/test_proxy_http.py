"""HTTP through a real nginx to the demo backend under Uvicorn and to a frontend stand-in."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from components.config import NginxSettings
from components.nginx_conf import Upstreams
from tests.proxy import harness
from tests.proxy.harness import DEFAULT_PREFIXES

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "referrer-policy": "strict-origin-when-cross-origin",
}


@pytest.fixture(scope="module")
def custom_proxy(
    nginx: harness.NginxRunner, loopback_upstreams: Upstreams
) -> Iterator[harness.Nginx]:
    settings = NginxSettings(client_max_body_size="1k", gzip=False, static_cache_days=7)
    with harness.run_nginx(
        settings, ("/v2/", "/health"), loopback_upstreams, runner=nginx
    ) as running:
        yield running


def _served_by_backend(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json") and (
        "x-served-by" not in response.headers
    )


@pytest.mark.parametrize("path", ["/api/whoami", "/health", "/openapi.json", "/docs"])
def test_api_prefixes_reach_the_backend(proxy: harness.Nginx, path: str) -> None:
    response = httpx.get(proxy.url(path))
    assert response.status_code == 200
    assert "x-served-by" not in response.headers
    if path != "/docs":
        assert _served_by_backend(response)


@pytest.mark.parametrize("path", ["/", "/dashboard/42", "/apiary", "/about"])
def test_everything_else_reaches_the_frontend(proxy: harness.Nginx, path: str) -> None:
    response = httpx.get(proxy.url(path))
    assert response.status_code == 200
    assert response.headers["x-served-by"] == "frontend"
    assert f"path={path}" in response.text


def test_custom_prefixes_move_the_split(custom_proxy: harness.Nginx) -> None:
    assert httpx.get(custom_proxy.url("/api/whoami")).headers["x-served-by"] == "frontend"
    moved = httpx.get(custom_proxy.url("/v2/anything"))
    assert moved.status_code == 404
    assert moved.json() == {"detail": "Not Found"}


def test_healthz_is_answered_by_nginx_itself(proxy: harness.Nginx) -> None:
    response = httpx.get(proxy.url("/healthz"))
    assert response.status_code == 200
    assert response.text == "ok\n"
    assert response.headers["content-type"] == "text/plain"


def test_backend_sees_the_real_client_address_not_nginx(proxy: harness.Nginx) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as client:
        response = client.get(
            proxy.url("/api/whoami"),
            headers={"Host": "astats.example.test:8080", "X-Forwarded-For": "203.0.113.9"},
        )
    seen = response.json()
    assert seen["client"] == "127.0.0.2"
    assert seen["scheme"] == "http"
    headers = seen["headers"]
    assert headers["x-real-ip"] == "127.0.0.2"
    assert headers["x-forwarded-for"] == "127.0.0.2", "a client-sent X-Forwarded-For leaked"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == "astats.example.test:8080"
    assert headers["x-forwarded-host"] == "astats.example.test:8080"


@pytest.mark.parametrize(
    "path", ["/", "/api/whoami", "/_next/static/chunks/main.js", "/healthz", "/nope-404"]
)
def test_security_headers_on_every_response(proxy: harness.Nginx, path: str) -> None:
    response = httpx.get(proxy.url(path))
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], name
    assert "x-powered-by" not in response.headers
    assert response.headers["server"] == "nginx", "server_tokens must hide the version"


def test_security_headers_on_proxy_errors(custom_proxy: harness.Nginx) -> None:
    response = httpx.post(custom_proxy.url("/v2/upload"), content=b"x" * 4096)
    assert response.status_code == 413
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value


def test_body_size_limit_follows_settings(
    proxy: harness.Nginx, custom_proxy: harness.Nginx
) -> None:
    body = b"x" * 4096
    assert httpx.post(custom_proxy.url("/health"), content=body).status_code == 413
    assert httpx.post(proxy.url("/health"), content=body).status_code == 405


def test_next_static_assets_are_cached_long(
    proxy: harness.Nginx, custom_proxy: harness.Nginx
) -> None:
    asset = "/_next/static/chunks/main.js"
    cached = httpx.get(proxy.url(asset)).headers.get_list("cache-control")
    assert cached == ["public, max-age=31536000, immutable"]
    custom = httpx.get(custom_proxy.url(asset)).headers.get_list("cache-control")
    assert custom == ["public, max-age=604800, immutable"]
    page = httpx.get(proxy.url("/")).headers.get_list("cache-control")
    assert page == ["no-store"], "pages keep the frontend's own cache policy"


@pytest.mark.parametrize("path", ["/", "/openapi.json", "/_next/static/chunks/main.js"])
def test_gzip_compresses_proxied_responses(proxy: harness.Nginx, path: str) -> None:
    with httpx.stream("GET", proxy.url(path), headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    assert len(gzip.decompress(raw)) > len(raw)


def test_gzip_off_sends_identity(custom_proxy: harness.Nginx) -> None:
    response = httpx.get(custom_proxy.url("/"), headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers


def _established_to(port: int) -> int:
    """Established TCP connections whose remote end is 127.0.0.1:`port` (IPv4, this netns)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    target = f"0100007F:{port:04X}"
    return sum(1 for row in rows if row.split()[2] == target and row.split()[3] == "01")


def test_upstream_connections_are_pooled(nginx: harness.NginxRunner, frontend_port: int) -> None:
    backend_port = harness.free_port()
    upstreams = Upstreams(f"127.0.0.1:{backend_port}", f"127.0.0.1:{frontend_port}")
    with (
        harness.run_backend(backend_port),
        harness.run_nginx(NginxSettings(), DEFAULT_PREFIXES, upstreams, runner=nginx) as proxy,
        httpx.Client() as client,
    ):
        for _ in range(20):
            assert client.get(proxy.url("/api/whoami")).status_code == 200
        idle = _established_to(backend_port)
    # One per worker that served a request, however many requests it served.
    assert 1 <= idle <= (os.cpu_count() or 1), idle

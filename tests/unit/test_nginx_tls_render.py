"""The HTTPS half of the rendered nginx.conf, read as text: what each server answers and which
headers every response carries. tests/proxy runs the same configs under real nginx."""

from __future__ import annotations

import re

import pytest

from components.config import HstsSettings, NginxSettings
from components.nginx_conf import (
    NginxRuntime,
    SwitchedUpstreams,
    TlsConf,
    render_nginx_conf,
)

PREFIXES = ("/api/", "/docs", "/openapi.json", "/health")
# Mozilla's intermediate TLS 1.2 suites, in its order (guidelines 6.0).
MOZILLA_INTERMEDIATE = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
]
SWITCHED = SwitchedUpstreams("/run/upstreams")
HSTS_ALL = HstsSettings(include_subdomains=True, preload=True)
IMAGE_NGINX = NginxRuntime()


def tls_conf(**changes: object) -> TlsConf:
    fields: dict[str, object] = {
        "certificate": "/etc/tls/fullchain.pem",
        "certificate_key": "/etc/tls/privkey.pem",
        "listen_port": 8443,
        "public_port": 443,
        "hsts": HstsSettings(),
        "acme_webroot": "/var/lib/acme",
    }
    return TlsConf(**(fields | changes))  # type: ignore[arg-type]


def render(tls: TlsConf | None, runtime: NginxRuntime = IMAGE_NGINX) -> str:
    return render_nginx_conf(
        NginxSettings(),
        PREFIXES,
        SWITCHED,
        listen_port=8080,
        assets_root="/srv/assets",
        runtime=runtime,
        tls=tls,
    )


def servers(config: str) -> list[str]:
    """Each `server { ... }` block's text, in order."""
    return re.findall(r"\n    server \{\n.*?\n    \}\n", config, flags=re.DOTALL)


def locations(server: str) -> dict[str, str]:
    blocks = re.findall(r"\n        (location [^{]+) \{\n(.*?)\n        \}", server, re.DOTALL)
    return {header: body for header, body in blocks}


def test_without_tls_the_config_is_the_plain_http_one() -> None:
    plain = render_nginx_conf(
        NginxSettings(), PREFIXES, SWITCHED, listen_port=8080, assets_root="/srv/assets"
    )
    assert render(None) == plain
    assert "ssl" not in plain and "Strict-Transport-Security" not in plain
    assert len(servers(plain)) == 1


def test_plain_http_keeps_only_the_health_check_and_the_acme_challenge() -> None:
    http, _ = servers(render(tls_conf()))
    assert "listen 8080;" in http
    assert set(locations(http)) == {
        "location = /healthz",
        'location ^~ "/.well-known/acme-challenge/"',
        "location /",
    }
    challenge = locations(http)['location ^~ "/.well-known/acme-challenge/"']
    assert "root /var/lib/acme;" in challenge
    assert "return" not in challenge
    assert "return 308 https://$host$request_uri;" in locations(http)["location /"]
    assert "proxy_pass" not in http
    assert "Strict-Transport-Security" not in http


def test_the_redirect_names_a_public_port_other_than_443() -> None:
    http, _ = servers(render(tls_conf(public_port=8443)))
    assert "return 308 https://$host:8443$request_uri;" in http


def test_without_an_acme_webroot_the_challenge_path_is_redirected_too() -> None:
    http, _ = servers(render(tls_conf(acme_webroot=None)))
    assert set(locations(http)) == {"location = /healthz", "location /"}


def test_https_serves_every_location_plain_http_served() -> None:
    plain = locations(servers(render(None))[0])
    _, https = servers(render(tls_conf()))
    without_hsts = {
        name: re.sub(r"\n *\S+ Strict-Transport-Security[^;]*;", "", body)
        for name, body in locations(https).items()
    }
    assert without_hsts == plain
    assert "listen 8443 ssl;\n        http2 on;" in https


def test_nginx_before_1_25_turns_http2_on_in_the_listen_line() -> None:
    _, https = servers(render(tls_conf(), NginxRuntime(legacy_http2=True)))
    assert "listen 8443 ssl http2;" in https
    assert "http2 on;" not in https


def test_the_tls_settings_are_mozillas_intermediate_profile() -> None:
    _, https = servers(render(tls_conf()))
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https
    ciphers = re.search(r"ssl_ciphers (\S+);", https)
    assert ciphers is not None
    assert ciphers.group(1).split(":") == MOZILLA_INTERMEDIATE
    for line in (
        "ssl_certificate /etc/tls/fullchain.pem;",
        "ssl_certificate_key /etc/tls/privkey.pem;",
        "ssl_prefer_server_ciphers off;",
        "ssl_session_timeout 1d;",
        "ssl_session_tickets off;",
    ):
        assert line in https
    assert re.search(r"ssl_session_cache shared:\w+:\d+m;", https)
    assert "ssl_stapling" not in https
    assert "ssl_dhparam" not in https


@pytest.mark.parametrize(
    ("hsts", "value"),
    [
        (HstsSettings(), "max-age=63072000"),
        (HstsSettings(max_age_s=300, include_subdomains=True), "max-age=300; includeSubDomains"),
        (HSTS_ALL, "max-age=63072000; includeSubDomains; preload"),
    ],
)
def test_every_location_that_adds_headers_repeats_hsts(hsts: HstsSettings, value: str) -> None:
    _, https = servers(render(tls_conf(hsts=hsts)))
    header = f'add_header Strict-Transport-Security "{value}" always;'
    server_level = https.split("\n        location")[0]
    assert header in server_level
    for name, body in locations(https).items():
        if "add_header" in body:
            assert header in body, name
            assert 'add_header X-Content-Type-Options "nosniff" always;' in body, name
        if "proxy_hide_header" in body:
            assert "proxy_hide_header Strict-Transport-Security;" in body, name


def test_hsts_can_be_turned_off() -> None:
    config = render(tls_conf(hsts=HstsSettings(enabled=False)))
    assert "Strict-Transport-Security" not in config
    assert 'add_header X-Frame-Options "SAMEORIGIN" always;' in servers(config)[1]


def test_backend_learns_the_scheme_from_nginx() -> None:
    _, https = servers(render(tls_conf()))
    assert https.count("proxy_set_header X-Forwarded-Proto $scheme;") == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"listen_port": 0}, "listen_port 0 is out of range"),
        ({"public_port": 70_000}, "public_port 70000 is out of range"),
    ],
)
def test_tls_ports_are_checked(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tls_conf(**changes)


def test_http_and_https_cannot_share_a_port() -> None:
    with pytest.raises(ValueError, match="both listen on 8080"):
        render(tls_conf(listen_port=8080))

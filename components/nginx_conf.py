"""The nginx.conf the reverse-proxy container runs, rendered from `NginxSettings`.

A pure function: no Pulumi, no clock, no randomness, so the same settings always give the
same text (a no-op `pulumi up` must plan zero changes) and tests can run the result under a
real nginx. The settings arrive validated by the config model, so nothing here checks them
again. Which container an upstream reaches is not DNS's choice: in Docker each upstream block
includes a file that the health-gated switch rewrites (components/switch.py, docs/proxy.md).

With `TlsConf`, the app is served over HTTPS as Mozilla's "intermediate" profile has it
(https://ssl-config.mozilla.org/, guidelines 6.0), and plain HTTP keeps only what must stay
plain: the health check and the ACME HTTP-01 challenge; everything else is redirected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from components.config import (
    NEXT_STATIC_PATH,
    NGINX_HEALTH_PATH,
    HstsSettings,
    NginxSettings,
    WebSocketSettings,
)

UPSTREAM_KEEPALIVE = 32
# Below Uvicorn's and Node's 5 s idle timeout, so nginx drops an idle upstream connection
# before the app does and never sends a request down one the app is closing.
UPSTREAM_KEEPALIVE_TIMEOUT_S = 4

_HOST_PORT = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$"
)
_INDENT = "    "
Header = tuple[str, str]
_SECURITY_HEADERS: tuple[Header, ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)
HSTS_HEADER = "Strict-Transport-Security"
ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"
TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
# Mozilla's intermediate TLS 1.2 suites (guidelines 6.0): ECDHE with AEAD only. The DHE suites
# of earlier versions are gone from it (they served only IE 11 on Windows 7 and 8.1, which
# Mozilla no longer lists), and with them the dhparam file nginx would need. TLS 1.3's
# suites are OpenSSL's defaults, which are Mozilla's three.
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
# Kept for a day, as Mozilla has it; 10 MB holds about 40 000 sessions.
TLS_SESSION_CACHE = "shared:tls:10m"
TLS_SESSION_TIMEOUT = "1d"
_GZIP_TYPES = (
    "application/javascript",
    "application/json",
    "application/manifest+json",
    "application/xml",
    "image/svg+xml",
    "text/css",
    "text/javascript",
    "text/plain",
    "text/xml",
)


@dataclass(frozen=True)
class Upstreams:
    """Fixed addresses (`host:port`) of the backend and of the frontend: tests on loopback."""

    backend: str
    frontend: str

    def __post_init__(self) -> None:
        for role, address in (("backend", self.backend), ("frontend", self.frontend)):
            if not _HOST_PORT.match(address) or not 0 < int(address.rsplit(":", 1)[1]) < 65_536:
                raise ValueError(f"{role} upstream {address!r} is not host:port")

    def servers(self, role: str) -> str:
        return f"server {getattr(self, role)};"


@dataclass(frozen=True)
class SwitchedUpstreams:
    """Each upstream's servers come from `<directory>/<role>.conf`, which the traffic switch
    points at a container once it is healthy (components/files/switch-upstream.sh)."""

    directory: str

    def servers(self, role: str) -> str:
        return f"include {self.directory}/{role}.conf;"


UpstreamSource = Upstreams | SwitchedUpstreams


@dataclass(frozen=True)
class NginxRuntime:
    """Process-level paths and user, and the nginx release's syntax; the defaults fit the
    official nginx image run as its unprivileged `nginx` user (no `user` line: the master is
    not root, so it cannot switch).

    Tests running Debian's nginx as an ordinary subprocess point these into a temp dir.
    """

    user: str | None = None
    pid_path: str = "/var/run/nginx.pid"
    temp_dir: str = "/var/cache/nginx"
    mime_types_path: str = "/etc/nginx/mime.types"
    error_log: str = "stderr"
    access_log: str = "/dev/stdout"
    legacy_http2: bool = False
    """nginx before 1.25.1 (Debian bookworm's 1.22) has no `http2` directive and turns HTTP/2
    on with a `listen ... http2` parameter, which later releases warn is deprecated."""


@dataclass(frozen=True)
class TlsConf:
    """HTTPS at nginx. Paths are as nginx sees them; ports are the container's, except
    `public_port`, the host port clients use, which the HTTP-to-HTTPS redirect names."""

    certificate: str
    """PEM chain: the certificate, then its intermediates."""
    certificate_key: str
    listen_port: int
    public_port: int
    hsts: HstsSettings
    acme_webroot: str | None = None
    """Served under `/.well-known/acme-challenge/` over plain HTTP (ACME HTTP-01); `None`
    (certificates from files) redirects that path like any other."""

    def __post_init__(self) -> None:
        for name in ("listen_port", "public_port"):
            if not 0 < getattr(self, name) < 65_536:
                raise ValueError(f"TLS {name} {getattr(self, name)} is out of range")

    @property
    def redirect_origin(self) -> str:
        port = "" if self.public_port == 443 else f":{self.public_port}"
        return f"https://$host{port}"


BACKEND = "http://backend_upstream"
FRONTEND = "http://frontend_upstream"
FRONTEND_STATIC = "@frontend_static"


def render_nginx_conf(
    settings: NginxSettings,
    api_prefixes: Sequence[str],
    upstreams: UpstreamSource,
    *,
    listen_port: int = 80,
    assets_root: str | None = None,
    runtime: NginxRuntime = NginxRuntime(),
    tls: TlsConf | None = None,
) -> str:
    """Render the complete nginx.conf.

    `api_prefixes` are the backend's (`backend.apiPrefixes`, checked by the config model).
    `assets_root` holds the frontend's `_next/static/` files of recent releases, served before
    the frontend is asked; `None` sends every static request to the frontend. `listen_port` is
    the port inside the container for plain HTTP; with `tls`, the app moves to HTTPS on
    `tls.listen_port`.
    """
    if not 0 < listen_port < 65_536:
        raise ValueError(f"listen_port {listen_port} is out of range")
    if tls is not None and tls.listen_port == listen_port:
        raise ValueError(f"HTTP and HTTPS both listen on {listen_port}")
    if tls is None:
        servers = [_server(settings, api_prefixes, [f"listen {listen_port};"], assets_root)]
    else:
        servers = [
            _redirect_server(listen_port, tls),
            _server(settings, api_prefixes, _tls_listen(tls, runtime), assets_root, tls),
        ]
    http = _paragraphs(
        _http_basics(settings.client_max_body_size, runtime),
        _gzip(settings.gzip),
        _forwarding_maps(),
        *(_upstream_block(role, upstreams.servers(role)) for role in ("backend", "frontend")),
        *servers,
    )
    lines = _paragraphs(
        _main_context(runtime),
        _block("events", ["worker_connections 4096;"]),
        _block("http", http),
    )
    return "\n".join(lines) + "\n"


def _block(header: str, body: Iterable[str]) -> list[str]:
    return [f"{header} {{", *(f"{_INDENT}{line}" if line else "" for line in body), "}"]


def _paragraphs(*paragraphs: list[str]) -> list[str]:
    """The non-empty paragraphs, one blank line between each."""
    lines: list[str] = []
    for paragraph in paragraphs:
        if paragraph:
            lines += [*([""] if lines else []), *paragraph]
    return lines


def _main_context(runtime: NginxRuntime) -> list[str]:
    return [
        *([f"user {runtime.user};"] if runtime.user is not None else []),
        "worker_processes auto;",
        f"pid {runtime.pid_path};",
        f"error_log {runtime.error_log} warn;",
    ]


def _http_basics(client_max_body_size: str, runtime: NginxRuntime) -> list[str]:
    temp = runtime.temp_dir
    return [
        f"include {runtime.mime_types_path};",
        "default_type application/octet-stream;",
        f"client_body_temp_path {temp}/client_temp;",
        f"proxy_temp_path {temp}/proxy_temp;",
        f"fastcgi_temp_path {temp}/fastcgi_temp;",
        f"uwsgi_temp_path {temp}/uwsgi_temp;",
        f"scgi_temp_path {temp}/scgi_temp;",
        "",
        "log_format proxied '$remote_addr [$time_local] \"$request\" $status '",
        "                   '$body_bytes_sent $request_time $upstream_addr '",
        "                   '$upstream_response_time';",
        f"access_log {runtime.access_log} proxied;",
        "",
        "server_tokens off;",
        "sendfile on;",
        "tcp_nodelay on;",
        "keepalive_timeout 65s;",
        f"client_max_body_size {client_max_body_size};",
    ]


def _gzip(enabled: bool) -> list[str]:
    if not enabled:
        return ["gzip off;"]
    return [
        "gzip on;",
        "gzip_vary on;",
        # Without `any`, responses to requests that came through another proxy stay raw.
        "gzip_proxied any;",
        "gzip_comp_level 5;",
        "gzip_min_length 256;",
        f"gzip_types {' '.join(_GZIP_TYPES)};",
    ]


def _forwarding_maps() -> list[str]:
    return [
        *_block("map $http_upgrade $connection_upgrade", ["default upgrade;", "''      close;"]),
        "",
        # The client's Host including its port (nginx publishes on e.g. 8080), so absolute
        # URLs the apps build point back at the proxy; $host only when the client sent none.
        *_block("map $http_host $forwarded_host", ["default $http_host;", "''      $host;"]),
    ]


def _upstream_block(role: str, servers: str) -> list[str]:
    # The servers are fixed between reloads, so idle connections can be kept: a switch
    # reloads nginx, and the old workers close theirs as they finish.
    return _block(
        f"upstream {role}_upstream",
        [
            servers,
            f"keepalive {UPSTREAM_KEEPALIVE};",
            f"keepalive_timeout {UPSTREAM_KEEPALIVE_TIMEOUT_S}s;",
        ],
    )


def _server(
    settings: NginxSettings,
    api_prefixes: Sequence[str],
    listen: list[str],
    assets_root: str | None,
    tls: TlsConf | None = None,
) -> list[str]:
    """The server that proxies the app: over plain HTTP, or over HTTPS with `tls`."""
    # A repeated prefix would be a duplicate location, which nginx refuses.
    prefixes = list(dict.fromkeys(api_prefixes))
    catch_all = BACKEND if "/" in prefixes else FRONTEND
    headers = _SECURITY_HEADERS
    if tls is not None and tls.hsts.enabled:
        headers = (*headers, (HSTS_HEADER, _hsts_value(tls.hsts)))
    body = _paragraphs(
        [*listen, "server_name _;"],
        _tls_settings(tls) if tls is not None else [],
        _security_headers(headers),
        _proxy_defaults(settings.proxy_read_timeout_s, headers),
        _health_location(),
        _websocket_location(settings.websocket),
        *_static_locations(settings.static_cache_days, assets_root, headers),
        *(_prefix_location(prefix) for prefix in prefixes if prefix != "/"),
        _block("location /", [f"proxy_pass {catch_all};"]),
    )
    return _block("server", body)


def _redirect_server(listen_port: int, tls: TlsConf) -> list[str]:
    """Plain HTTP once TLS is on: the container's health check (it curls this port), the
    ACME challenge files, and a redirect to HTTPS for everything else."""
    acme = tls.acme_webroot
    body = _paragraphs(
        [f"listen {listen_port};", "server_name _;"],
        _security_headers(_SECURITY_HEADERS),
        _health_location(),
        _acme_challenge_location(acme) if acme is not None else [],
        # 308, as Mozilla's generator: unlike 301, a client must repeat the method and body,
        # so an API call to an old http:// URL is not silently turned into a GET. Every client
        # the intermediate profile serves knows 308. No HSTS here: browsers ignore it over HTTP.
        _block("location /", [f"return 308 {tls.redirect_origin}$request_uri;"]),
    )
    return _block("server", body)


def _acme_challenge_location(webroot: str) -> list[str]:
    return _block(
        f'location ^~ "{ACME_CHALLENGE_PATH}"',
        [f"root {webroot};", "default_type text/plain;", "try_files $uri =404;"],
    )


def _tls_listen(tls: TlsConf, runtime: NginxRuntime) -> list[str]:
    if runtime.legacy_http2:
        return [f"listen {tls.listen_port} ssl http2;"]
    return [f"listen {tls.listen_port} ssl;", "http2 on;"]


def _tls_settings(tls: TlsConf) -> list[str]:
    # No ssl_ecdh_curve: nginx's `auto` keeps OpenSSL's own list, which from OpenSSL 3.5
    # starts with Mozilla's first choice, the post-quantum X25519MLKEM768, then X25519, while
    # a list naming it keeps nginx on an older OpenSSL (3.0 in Debian bookworm) from starting.
    # No OCSP stapling: Let's Encrypt ended its OCSP service; revocation is by CRL.
    return [
        f"ssl_certificate {tls.certificate};",
        f"ssl_certificate_key {tls.certificate_key};",
        f"ssl_protocols {' '.join(TLS_PROTOCOLS)};",
        f"ssl_ciphers {':'.join(TLS_CIPHERS)};",
        # Every suite offered is strong, so the client's order wins: it knows whether it
        # has AES hardware or is better off with ChaCha20.
        "ssl_prefer_server_ciphers off;",
        f"ssl_session_cache {TLS_SESSION_CACHE};",
        f"ssl_session_timeout {TLS_SESSION_TIMEOUT};",
        # Resumption from the session cache alone, as Mozilla has it for nginx before 1.23.2,
        # which never rotates its ticket key: one key, kept for the process's life, would
        # unlock every recorded session. One server resumes as well from its cache.
        "ssl_session_tickets off;",
    ]


def _hsts_value(hsts: HstsSettings) -> str:
    directives = [f"max-age={hsts.max_age_s}"]
    directives += ["includeSubDomains"] if hsts.include_subdomains else []
    directives += ["preload"] if hsts.preload else []
    return "; ".join(directives)


def _proxy_defaults(read_timeout_s: int, headers: Sequence[Header]) -> list[str]:
    return [
        "proxy_http_version 1.1;",
        *_forwarding_headers(upgrade=False),
        "proxy_connect_timeout 5s;",
        f"proxy_read_timeout {read_timeout_s}s;",
        f"proxy_send_timeout {read_timeout_s}s;",
        *_hidden_headers(headers),
    ]


def _health_location() -> list[str]:
    return _block(
        f"location = {NGINX_HEALTH_PATH}",
        ["access_log off;", "default_type text/plain;", 'return 200 "ok\\n";'],
    )


def _websocket_location(websocket: WebSocketSettings) -> list[str]:
    return _block(
        f'location ^~ "{websocket.path}"',
        [
            f"proxy_pass {BACKEND};",
            # proxy_set_header in a location replaces the server's whole list, so the upgrade
            # location repeats the forwarding headers next to its Upgrade/Connection pair.
            *_forwarding_headers(upgrade=True),
            "proxy_buffering off;",
            f"proxy_read_timeout {websocket.read_timeout_s}s;",
            f"proxy_send_timeout {websocket.send_timeout_s}s;",
        ],
    )


def _static_locations(
    cache_days: int, assets_root: str | None, server_headers: Sequence[Header]
) -> list[list[str]]:
    """`/_next/static/` from the assets of recent releases, else from the frontend: a page
    loaded before a rollout still finds its chunks after it."""
    cache_control = (
        f"public, max-age={cache_days * 86_400}, immutable" if cache_days else "no-cache"
    )
    headers = [
        *_security_headers(server_headers),
        f'add_header Cache-Control "{cache_control}" always;',
    ]
    from_frontend = [
        f"proxy_pass {FRONTEND};",
        *_hidden_headers(server_headers, "Cache-Control"),
        *headers,
    ]
    if assets_root is None:
        return [_block(f'location ^~ "{NEXT_STATIC_PATH}"', from_frontend)]
    return [
        _block(
            f'location ^~ "{NEXT_STATIC_PATH}"',
            [f"root {assets_root};", f"try_files $uri {FRONTEND_STATIC};", *headers],
        ),
        _block(f"location {FRONTEND_STATIC}", from_frontend),
    ]


def _prefix_location(prefix: str) -> list[str]:
    return _block(f'location ^~ "{prefix}"', [f"proxy_pass {BACKEND};"])


def _security_headers(headers: Sequence[Header]) -> list[str]:
    # add_header in a location discards the server's add_header lines, so any location that
    # adds its own header repeats these (HSTS among them over HTTPS).
    return [f'add_header {name} "{value}" always;' for name, value in headers]


def _hidden_headers(headers: Sequence[Header], *extra: str) -> list[str]:
    # An upstream's own copy of a header nginx sets would arrive twice; and like add_header,
    # a location's proxy_hide_header discards the server's list, so locations pass extras here.
    names = [name for name, _ in headers] + ["X-Powered-By", *extra]
    return [f"proxy_hide_header {name};" for name in names]


def _forwarding_headers(*, upgrade: bool) -> list[str]:
    if upgrade:
        connection = [
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
        ]
    else:
        # An empty Connection lets the upstream connection return to the keepalive pool;
        # Upgrade is not passed, so only the WebSocket location can switch protocols.
        connection = ['proxy_set_header Connection "";']
    return [
        "proxy_set_header Host $forwarded_host;",
        *connection,
        "proxy_set_header X-Real-IP $remote_addr;",
        # nginx is the edge: a client-sent X-Forwarded-For is replaced, never extended, since
        # Uvicorn trusting every proxy takes the left-most entry as the client.
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $forwarded_host;",
    ]

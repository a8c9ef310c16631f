"""The nginx.conf the reverse-proxy container runs, rendered from `NginxSettings`.

A pure function: no Pulumi, no clock, no randomness, so the same settings always give the
same text (a no-op `pulumi up` must plan zero changes) and tests can run the result under a
real nginx. The settings arrive validated by the config model, so nothing here checks them
again. The two ways of reaching upstreams by name (`upstreamMode`) and why "resolve" is the
default are explained in docs/proxy.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from components.config import (
    NEXT_STATIC_PATH,
    NGINX_HEALTH_PATH,
    NginxSettings,
    WebSocketSettings,
)
from components.config import UpstreamMode as UpstreamMode

DOCKER_DNS = "127.0.0.11"
RESOLVE_MIN_NGINX = (1, 27, 3)
UPSTREAM_KEEPALIVE = 32
# Below Uvicorn's and Node's 5 s idle timeout, so nginx drops an idle upstream connection
# before the app does and never sends a request down one the app is closing.
UPSTREAM_KEEPALIVE_TIMEOUT_S = 4

_HOST_PORT = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$"
)
_RESOLVER = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")
_INDENT = "    "
_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)
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
    """Where nginx sends requests: `host:port` of the backend and of the frontend.

    In Docker these are the network aliases (`backend:8000`, `frontend:3000`); tests use
    loopback addresses.
    """

    backend: str
    frontend: str

    def __post_init__(self) -> None:
        for role, address in (("backend", self.backend), ("frontend", self.frontend)):
            if not _HOST_PORT.match(address) or not 0 < int(address.rsplit(":", 1)[1]) < 65_536:
                raise ValueError(f"{role} upstream {address!r} is not host:port")


@dataclass(frozen=True)
class NginxRuntime:
    """Process-level paths and user; the defaults fit the official nginx image.

    Tests running Debian's nginx as an ordinary subprocess point these into a temp dir.
    """

    user: str | None = "nginx"
    pid_path: str = "/var/run/nginx.pid"
    temp_dir: str = "/var/cache/nginx"
    mime_types_path: str = "/etc/nginx/mime.types"
    error_log: str = "stderr"
    access_log: str = "/dev/stdout"


@dataclass(frozen=True)
class _ProxyPass:
    """The `proxy_pass` targets of one upstream mode.

    "resolve": one `upstream {}` block per service with keepalive connections, its name
    re-resolved by `server ... resolve` (nginx >= 1.27.3 when a resolver is set). "variable":
    the address in a variable, so `proxy_pass` resolves it per request (any nginx version, but
    a new upstream connection per request).
    """

    backend: str
    frontend: str
    keepalive: bool

    @classmethod
    def of(cls, mode: UpstreamMode) -> _ProxyPass:
        if mode == "resolve":
            return cls("http://backend_upstream", "http://frontend_upstream", keepalive=True)
        return cls("http://$backend_upstream", "http://$frontend_upstream", keepalive=False)


def render_nginx_conf(
    settings: NginxSettings,
    api_prefixes: Sequence[str],
    upstreams: Upstreams,
    *,
    listen_port: int = 80,
    resolver: str | None = DOCKER_DNS,
    runtime: NginxRuntime = NginxRuntime(),
) -> str:
    """Render the complete nginx.conf.

    `api_prefixes` are the backend's (`backend.apiPrefixes`, checked by the config model).
    `resolver` is the DNS server nginx asks for the upstream names while it runs (Docker's
    embedded DNS by default); `None` means the upstreams are literal addresses and no
    resolver is configured. `listen_port` is the port inside the container.
    """
    if not 0 < listen_port < 65_536:
        raise ValueError(f"listen_port {listen_port} is out of range")
    if resolver is not None and not _RESOLVER.match(resolver):
        raise ValueError(f"resolver {resolver!r} is not an address[:port]")
    proxy = _ProxyPass.of(settings.upstream_mode)
    http = _paragraphs(
        _http_basics(settings.client_max_body_size, runtime),
        _gzip(settings.gzip),
        _forwarding_maps(),
        _resolver(resolver, settings.resolver_valid_s),
        *(
            _upstream_block(role, address, resolve=resolver is not None)
            for role, address in (("backend", upstreams.backend), ("frontend", upstreams.frontend))
            if proxy.keepalive
        ),
        _server(settings, api_prefixes, upstreams, listen_port, proxy),
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


def _resolver(resolver: str | None, valid_s: int) -> list[str]:
    if resolver is None:
        return []
    return [f"resolver {resolver} valid={valid_s}s ipv6=off;", "resolver_timeout 5s;"]


def _upstream_block(role: str, address: str, *, resolve: bool) -> list[str]:
    if resolve:
        # `resolve` keeps the name's addresses current from the resolver (a replaced
        # container's new address within resolverValidS) and lets nginx start while the name
        # does not resolve yet; it needs the shared-memory zone.
        server = [f"zone {role}_upstream 64k;", f"server {address} resolve;"]
    else:
        server = [f"server {address};"]
    return _block(
        f"upstream {role}_upstream",
        [
            *server,
            f"keepalive {UPSTREAM_KEEPALIVE};",
            f"keepalive_timeout {UPSTREAM_KEEPALIVE_TIMEOUT_S}s;",
        ],
    )


def _server(
    settings: NginxSettings,
    api_prefixes: Sequence[str],
    upstreams: Upstreams,
    listen_port: int,
    proxy: _ProxyPass,
) -> list[str]:
    # A repeated prefix would be a duplicate location, which nginx refuses.
    prefixes = list(dict.fromkeys(api_prefixes))
    catch_all = proxy.backend if "/" in prefixes else proxy.frontend
    body = _paragraphs(
        [f"listen {listen_port};", "server_name _;"],
        [] if proxy.keepalive else _upstream_variables(upstreams),
        _security_headers(),
        _proxy_defaults(settings.proxy_read_timeout_s, keepalive=proxy.keepalive),
        _health_location(),
        _websocket_location(settings.websocket, proxy),
        _static_location(settings.static_cache_days, proxy.frontend),
        *(_prefix_location(prefix, proxy.backend) for prefix in prefixes if prefix != "/"),
        _block("location /", [f"proxy_pass {catch_all};"]),
    )
    return _block("server", body)


def _upstream_variables(upstreams: Upstreams) -> list[str]:
    # A variable in proxy_pass makes nginx resolve the name per request (cached for
    # resolverValidS) instead of once at startup: see docs/proxy.md.
    return [
        f"set $backend_upstream {upstreams.backend};",
        f"set $frontend_upstream {upstreams.frontend};",
    ]


def _proxy_defaults(read_timeout_s: int, *, keepalive: bool) -> list[str]:
    return [
        "proxy_http_version 1.1;",
        # Without keepalive every location may upgrade (the connection closes anyway), which
        # is the exact text earlier releases shipped in "variable" mode.
        *_forwarding_headers(upgrade=not keepalive),
        "proxy_connect_timeout 5s;",
        f"proxy_read_timeout {read_timeout_s}s;",
        f"proxy_send_timeout {read_timeout_s}s;",
        *_hidden_headers(),
    ]


def _health_location() -> list[str]:
    return _block(
        f"location = {NGINX_HEALTH_PATH}",
        ["access_log off;", "default_type text/plain;", 'return 200 "ok\\n";'],
    )


def _websocket_location(websocket: WebSocketSettings, proxy: _ProxyPass) -> list[str]:
    return _block(
        f'location ^~ "{websocket.path}"',
        [
            f"proxy_pass {proxy.backend};",
            # proxy_set_header in a location replaces the server's whole list, so the upgrade
            # location repeats the forwarding headers next to its Upgrade/Connection pair.
            *(_forwarding_headers(upgrade=True) if proxy.keepalive else []),
            "proxy_buffering off;",
            f"proxy_read_timeout {websocket.read_timeout_s}s;",
            f"proxy_send_timeout {websocket.send_timeout_s}s;",
        ],
    )


def _static_location(cache_days: int, frontend: str) -> list[str]:
    cache_control = (
        f"public, max-age={cache_days * 86_400}, immutable" if cache_days else "no-cache"
    )
    return _block(
        f'location ^~ "{NEXT_STATIC_PATH}"',
        [
            f"proxy_pass {frontend};",
            *_hidden_headers("Cache-Control"),
            *_security_headers(),
            f'add_header Cache-Control "{cache_control}" always;',
        ],
    )


def _prefix_location(prefix: str, backend: str) -> list[str]:
    return _block(f'location ^~ "{prefix}"', [f"proxy_pass {backend};"])


def _security_headers() -> list[str]:
    # add_header in a location discards the server's add_header lines, so any location that
    # adds its own header repeats these.
    return [f'add_header {name} "{value}" always;' for name, value in _SECURITY_HEADERS]


def _hidden_headers(*extra: str) -> list[str]:
    # An upstream's own copy of a header nginx sets would arrive twice; and like add_header,
    # a location's proxy_hide_header discards the server's list, so locations pass extras here.
    names = [name for name, _ in _SECURITY_HEADERS] + ["X-Powered-By", *extra]
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

"""The nginx.conf the reverse-proxy container runs, rendered from `NginxSettings`.

A pure function: no Pulumi, no clock, no randomness, so the same settings always give the
same text (a no-op `pulumi up` must plan zero changes) and tests can run the result under a
real nginx. The two ways of reaching upstreams by name (`upstream_mode`) and why "resolve" is
the default are explained in docs/proxy.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from components.config import NginxSettings

HEALTH_PATH = "/healthz"
NEXT_STATIC_PATH = "/_next/static/"
DOCKER_DNS = "127.0.0.11"
UpstreamMode = Literal["resolve", "variable"]
UPSTREAM_MODES: tuple[UpstreamMode, ...] = ("resolve", "variable")
RESOLVE_MIN_NGINX = (1, 27, 3)
UPSTREAM_KEEPALIVE = 32
# Below Uvicorn's and Node's 5 s idle timeout, so nginx drops an idle upstream connection
# before the app does and never sends a request down one the app is closing.
UPSTREAM_KEEPALIVE_TIMEOUT_S = 4

_HOST_PORT = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$"
)
_RESOLVER = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")
_LOCATION = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$")
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


def render_nginx_conf(
    settings: NginxSettings,
    api_prefixes: Sequence[str],
    upstreams: Upstreams,
    *,
    listen_port: int = 80,
    resolver: str | None = DOCKER_DNS,
    resolver_valid_s: int = 10,
    runtime: NginxRuntime = NginxRuntime(),
    upstream_mode: UpstreamMode = "resolve",
) -> str:
    """Render the complete nginx.conf.

    `resolver` is the DNS server nginx asks for the upstream names while it runs (Docker's
    embedded DNS by default); `None` means the upstreams are literal addresses and no
    resolver is configured. `resolver_valid_s` bounds how long a replaced container's old
    address stays in nginx's cache.

    `upstream_mode` "resolve" puts each upstream in an `upstream {}` block with keepalive
    connections, its name re-resolved by `server ... resolve` (needs nginx >= 1.27.3 when a
    resolver is set); "variable" puts the address in a variable so `proxy_pass` resolves it
    per request (any nginx version, but a new upstream connection per request).
    """
    if upstream_mode not in UPSTREAM_MODES:
        raise ValueError(f"upstream_mode {upstream_mode!r} is not one of {UPSTREAM_MODES}")
    prefixes = _api_locations(api_prefixes, settings.websocket.path)
    if not 0 < listen_port < 65_536:
        raise ValueError(f"listen_port {listen_port} is out of range")
    if resolver is not None and not _RESOLVER.match(resolver):
        raise ValueError(f"resolver {resolver!r} is not an address[:port]")
    if resolver_valid_s < 1:
        raise ValueError("resolver_valid_s must be at least 1")

    static_cache = _static_cache_control(settings.static_cache_days)
    lines: list[str] = []
    if runtime.user is not None:
        lines.append(f"user {runtime.user};")
    lines += [
        "worker_processes auto;",
        f"pid {runtime.pid_path};",
        f"error_log {runtime.error_log} warn;",
        "",
        "events {",
        "    worker_connections 4096;",
        "}",
        "",
        "http {",
        f"    include {runtime.mime_types_path};",
        "    default_type application/octet-stream;",
        f"    client_body_temp_path {runtime.temp_dir}/client_temp;",
        f"    proxy_temp_path {runtime.temp_dir}/proxy_temp;",
        f"    fastcgi_temp_path {runtime.temp_dir}/fastcgi_temp;",
        f"    uwsgi_temp_path {runtime.temp_dir}/uwsgi_temp;",
        f"    scgi_temp_path {runtime.temp_dir}/scgi_temp;",
        "",
        "    log_format proxied '$remote_addr [$time_local] \"$request\" $status '",
        "                       '$body_bytes_sent $request_time $upstream_addr '",
        "                       '$upstream_response_time';",
        f"    access_log {runtime.access_log} proxied;",
        "",
        "    server_tokens off;",
        "    sendfile on;",
        "    tcp_nodelay on;",
        "    keepalive_timeout 65s;",
        f"    client_max_body_size {settings.client_max_body_size};",
        "",
    ]
    lines += _gzip(settings.gzip)
    lines += [
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        ''      close;",
        "    }",
        "",
        # The client's Host including its port (nginx publishes on e.g. 8080), so absolute
        # URLs the apps build point back at the proxy; $host only when the client sent none.
        "    map $http_host $forwarded_host {",
        "        default $http_host;",
        "        ''      $host;",
        "    }",
        "",
    ]
    if resolver is not None:
        lines += [
            f"    resolver {resolver} valid={resolver_valid_s}s ipv6=off;",
            "    resolver_timeout 5s;",
            "",
        ]
    keepalive = upstream_mode == "resolve"
    if keepalive:
        lines += _upstream_block("backend", upstreams.backend, resolve=resolver is not None)
        lines += _upstream_block("frontend", upstreams.frontend, resolve=resolver is not None)
        backend_pass, frontend_pass = "http://backend_upstream", "http://frontend_upstream"
    else:
        backend_pass, frontend_pass = "http://$backend_upstream", "http://$frontend_upstream"
    lines += [
        "    server {",
        f"        listen {listen_port};",
        "        server_name _;",
        "",
    ]
    if not keepalive:
        lines += [
            # A variable in proxy_pass makes nginx resolve the name per request (cached for
            # resolver_valid_s) instead of once at startup: see docs/proxy.md.
            f"        set $backend_upstream {upstreams.backend};",
            f"        set $frontend_upstream {upstreams.frontend};",
            "",
        ]
    lines += [
        *_security_headers(8),
        "",
        *_proxy_defaults(settings.proxy_read_timeout_s, keepalive=keepalive),
        "",
        f"        location = {HEALTH_PATH} {{",
        "            access_log off;",
        "            default_type text/plain;",
        '            return 200 "ok\\n";',
        "        }",
        "",
        f'        location ^~ "{settings.websocket.path}" {{',
        f"            proxy_pass {backend_pass};",
        # proxy_set_header in a location replaces the server's whole list, so the upgrade
        # location repeats the forwarding headers next to its Upgrade/Connection pair.
        *(_forwarding_headers(12, upgrade=True) if keepalive else []),
        "            proxy_buffering off;",
        f"            proxy_read_timeout {settings.websocket.read_timeout_s}s;",
        f"            proxy_send_timeout {settings.websocket.send_timeout_s}s;",
        "        }",
        "",
        f'        location ^~ "{NEXT_STATIC_PATH}" {{',
        f"            proxy_pass {frontend_pass};",
        *_hidden_headers(12, "Cache-Control"),
        *_security_headers(12),
        f'            add_header Cache-Control "{static_cache}" always;',
        "        }",
    ]
    catch_all = backend_pass if "/" in prefixes else frontend_pass
    for prefix in prefixes:
        if prefix == "/":
            continue
        lines += [
            "",
            f'        location ^~ "{prefix}" {{',
            f"            proxy_pass {backend_pass};",
            "        }",
        ]
    lines += [
        "",
        "        location / {",
        f"            proxy_pass {catch_all};",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _api_locations(api_prefixes: Sequence[str], websocket_path: str) -> list[str]:
    """The backend prefixes in their given order, without duplicates.

    A prefix equal to a location nginx already defines would make nginx refuse the config
    ("duplicate location"), so it is rejected here with the reason.
    """
    reserved = {
        HEALTH_PATH: "nginx's own health check",
        NEXT_STATIC_PATH: "Next.js static assets",
    }
    reserved[websocket_path] = "the WebSocket location"
    if not _LOCATION.match(websocket_path):
        raise ValueError(f"websocket path {websocket_path!r} is not a URL path")
    seen: list[str] = []
    for prefix in api_prefixes:
        if not _LOCATION.match(prefix):
            raise ValueError(f"API prefix {prefix!r} is not a URL path")
        if prefix in reserved:
            raise ValueError(f"API prefix {prefix!r} collides with {reserved[prefix]}")
        if prefix not in seen:
            seen.append(prefix)
    if not seen:
        raise ValueError("at least one API prefix is needed")
    return seen


def _gzip(enabled: bool) -> list[str]:
    if not enabled:
        return ["    gzip off;", ""]
    return [
        "    gzip on;",
        "    gzip_vary on;",
        # Without `any`, responses to requests that came through another proxy stay raw.
        "    gzip_proxied any;",
        "    gzip_comp_level 5;",
        "    gzip_min_length 256;",
        f"    gzip_types {' '.join(_GZIP_TYPES)};",
        "",
    ]


def _security_headers(indent: int) -> list[str]:
    # add_header in a location discards the server's add_header lines, so any location that
    # adds its own header repeats these.
    pad = " " * indent
    return [f'{pad}add_header {name} "{value}" always;' for name, value in _SECURITY_HEADERS]


def _hidden_headers(indent: int, *extra: str) -> list[str]:
    # An upstream's own copy of a header nginx sets would arrive twice; and like add_header,
    # a location's proxy_hide_header discards the server's list, so locations pass extras here.
    pad = " " * indent
    names = [name for name, _ in _SECURITY_HEADERS] + ["X-Powered-By", *extra]
    return [f"{pad}proxy_hide_header {name};" for name in names]


def _upstream_block(role: str, address: str, *, resolve: bool) -> list[str]:
    server = f"        server {address}"
    if resolve:
        # `resolve` keeps the name's addresses current from the resolver (a replaced
        # container's new address within resolver_valid_s) and lets nginx start while the
        # name does not resolve yet; it needs the shared-memory zone.
        return [
            f"    upstream {role}_upstream {{",
            f"        zone {role}_upstream 64k;",
            f"{server} resolve;",
            f"        keepalive {UPSTREAM_KEEPALIVE};",
            f"        keepalive_timeout {UPSTREAM_KEEPALIVE_TIMEOUT_S}s;",
            "    }",
            "",
        ]
    return [
        f"    upstream {role}_upstream {{",
        f"{server};",
        f"        keepalive {UPSTREAM_KEEPALIVE};",
        f"        keepalive_timeout {UPSTREAM_KEEPALIVE_TIMEOUT_S}s;",
        "    }",
        "",
    ]


def _forwarding_headers(indent: int, *, upgrade: bool) -> list[str]:
    pad = " " * indent
    if upgrade:
        connection = [
            f"{pad}proxy_set_header Upgrade $http_upgrade;",
            f"{pad}proxy_set_header Connection $connection_upgrade;",
        ]
    else:
        # An empty Connection lets the upstream connection return to the keepalive pool;
        # Upgrade is not passed, so only the WebSocket location can switch protocols.
        connection = [f'{pad}proxy_set_header Connection "";']
    return [
        f"{pad}proxy_set_header Host $forwarded_host;",
        *connection,
        f"{pad}proxy_set_header X-Real-IP $remote_addr;",
        # nginx is the edge: a client-sent X-Forwarded-For is replaced, never extended, since
        # Uvicorn trusting every proxy takes the left-most entry as the client.
        f"{pad}proxy_set_header X-Forwarded-For $remote_addr;",
        f"{pad}proxy_set_header X-Forwarded-Proto $scheme;",
        f"{pad}proxy_set_header X-Forwarded-Host $forwarded_host;",
    ]


def _proxy_defaults(read_timeout_s: int, *, keepalive: bool) -> list[str]:
    pad = " " * 8
    return [
        f"{pad}proxy_http_version 1.1;",
        # Without keepalive every location may upgrade (the connection closes anyway), which
        # is the exact text earlier releases shipped in "variable" mode.
        *_forwarding_headers(8, upgrade=not keepalive),
        f"{pad}proxy_connect_timeout 5s;",
        f"{pad}proxy_read_timeout {read_timeout_s}s;",
        f"{pad}proxy_send_timeout {read_timeout_s}s;",
        *_hidden_headers(8),
    ]


def _static_cache_control(days: int) -> str:
    if days == 0:
        return "no-cache"
    return f"public, max-age={days * 86_400}, immutable"

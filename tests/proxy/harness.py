"""Real processes for the proxy tests and the proxy benchmark.

nginx runs in the foreground from a temp prefix with the config `render_nginx_conf` produced,
either the machine's own nginx (Debian's 1.22) or, through `ContainerNginx`, a current nginx
in a local image with the host's network and the prefix bind-mounted at the same path, so both
see the same loopback upstreams and files. The demo backend runs under a real Uvicorn started
the way the Pulumi program starts it, and a tiny `http.server` stands in for the Next.js
frontend. `Nginx.switch` runs the program's traffic switch (components/files/switch-upstream.sh)
where nginx runs: on this host, or inside the nginx container. With `TlsFiles`, nginx serves
the app over HTTPS on a second port and plain HTTP only redirects (tests/proxy/tls_pki.py makes
the certificates).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from components.backend import uvicorn_command
from components.config import BackendSettings, BuildSettings, HstsSettings, NginxSettings
from components.nginx_conf import (
    NginxRuntime,
    SwitchedUpstreams,
    TlsConf,
    Upstreams,
    render_nginx_conf,
)
from components.switch import SWITCH_SCRIPT

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PREFIXES = BackendSettings(build=BuildSettings(context=".")).api_prefixes
BACKEND_DIR = REPO / "examples" / "demo-app" / "backend"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
# The first nginx with the `http2` directive; older ones take `listen ... http2`.
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)
# Mozilla's "intermediate" suites (guidelines 6.0, https://ssl-config.mozilla.org/), written
# out here so the tests hold the renderer to the reference rather than to its own list.
MOZILLA_TLS12_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    }
)
MOZILLA_TLS13_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)


class NginxUnavailableError(RuntimeError):
    """A program the tests need is not installed."""


def nginx_binary() -> str:
    for candidate in NGINX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nginx")
    if found is None:
        raise NginxUnavailableError("nginx not found; install it with: apt-get install -y nginx")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_ok(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited ({process.returncode}):\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass(frozen=True)
class LocalNginx:
    """The nginx installed on this machine, run as a subprocess."""

    binary: str

    @functools.cached_property
    def version(self) -> str:
        return nginx_version([self.binary, "-v"])

    @property
    def label(self) -> str:
        return f"nginx {self.version} (local)"

    @property
    def legacy_http2(self) -> bool:
        return _release(self.version) < HTTP2_DIRECTIVE_SINCE

    @functools.cached_property
    def openssl(self) -> tuple[int, ...]:
        return openssl_release([self.binary, "-V"])

    def command(self, root: Path, *args: str) -> list[str]:
        return [self.binary, "-p", str(root), "-c", str(root / "nginx.conf"), *args]

    def nginx(self, root: Path) -> str:
        """How a script where nginx runs calls it for this prefix (the switch's NGINX)."""
        return f"{self.binary} -p {root} -c {root / 'nginx.conf'}"

    def where_nginx_runs(self, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """An argv that runs a program beside the nginx `command` started, with `env`."""
        return ["env", *(f"{k}={v}" for k, v in env.items())]

    def cleanup(self, command: Sequence[str]) -> None:
        pass


@dataclass(frozen=True)
class ContainerNginx:
    """nginx from a local image, on the host's network with `root` mounted at its own path."""

    image: str
    _names: dict[tuple[str, ...], str] = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def version(self) -> str:
        return nginx_version(["docker", "run", "--rm", self.image, "nginx", "-v"])

    @property
    def label(self) -> str:
        return f"nginx {self.version} (container {self.image})"

    @property
    def legacy_http2(self) -> bool:
        return _release(self.version) < HTTP2_DIRECTIVE_SINCE

    @functools.cached_property
    def openssl(self) -> tuple[int, ...]:
        return openssl_release(["docker", "run", "--rm", self.image, "nginx", "-V"])

    def command(self, root: Path, *args: str) -> list[str]:
        name = f"astats-test-nginx-{uuid.uuid4().hex[:12]}"
        command = [
            "docker",
            "run",
            "--rm",
            "--name",
            name,
            "--network",
            "host",
            "--volume",
            f"{root}:{root}",
            self.image,
            "nginx",
            "-p",
            str(root),
            "-c",
            str(root / "nginx.conf"),
            *args,
        ]
        self._names[tuple(command)] = name
        return command

    def nginx(self, root: Path) -> str:
        return f"nginx -p {root} -c {root / 'nginx.conf'}"

    def where_nginx_runs(self, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
        name = self._names[tuple(command)]
        return [
            "docker",
            "exec",
            "--interactive",
            *(f"--env={k}={v}" for k, v in env.items()),
            name,
        ]

    def cleanup(self, command: Sequence[str]) -> None:
        # The docker client passes SIGTERM on to nginx; should it die first, the container
        # would outlive the test.
        name = self._names.pop(tuple(command), None)
        if name is not None:
            subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


NginxRunner = LocalNginx | ContainerNginx


def nginx_version(command: Sequence[str]) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    output = result.stderr + result.stdout
    return output.split("nginx/", 1)[1].split()[0] if "nginx/" in output else "?"


def openssl_release(command: Sequence[str]) -> tuple[int, ...]:
    """The OpenSSL nginx runs with, from `nginx -V` ("running with" when it differs from the
    one it was built with)."""
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    found = re.findall(r"OpenSSL (\d+(?:\.\d+)+)", result.stderr + result.stdout)
    if not found:
        raise NginxUnavailableError(f"`{' '.join(command)}` names no OpenSSL")
    return tuple(int(part) for part in found[-1].split("."))


def _release(version: str) -> tuple[int, ...]:
    if not all(part.isdigit() for part in version.split(".")):
        raise NginxUnavailableError(f"nginx printed no version ({version!r})")
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class TlsFiles:
    """What nginx needs for HTTPS from a test: a PEM chain (leaf first), its key, the HSTS
    policy, and whether a webroot serves ACME challenges over plain HTTP."""

    chain_pem: bytes
    key_pem: bytes
    hsts: HstsSettings = field(default_factory=HstsSettings)
    acme_webroot: bool = True


@dataclass
class Nginx:
    port: int
    root: Path
    config: str
    process: subprocess.Popen[bytes]
    runner: NginxRunner
    command: list[str]
    tls: TlsConf | None = None

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def https_port(self) -> int:
        if self.tls is None:
            raise RuntimeError("this nginx was started without TLS")
        return self.tls.listen_port

    def https_url(self, path: str = "/", host: str = "localhost") -> str:
        return f"https://{host}:{self.https_port}{path}"

    def wss_url(self, path: str, host: str = "localhost") -> str:
        return f"wss://{host}:{self.https_port}{path}"

    @property
    def acme_webroot(self) -> Path:
        if self.tls is None or self.tls.acme_webroot is None:
            raise RuntimeError("this nginx serves no ACME webroot")
        return Path(self.tls.acme_webroot)

    def log(self) -> str:
        return _tail(self.root / "error.log", 100)

    @property
    def upstream_dir(self) -> Path:
        return self.root / "upstreams"

    def switch(self, service: str, servers: str) -> subprocess.CompletedProcess[str]:
        """The program's traffic switch, run where nginx runs, as `docker exec` runs it."""
        env = {
            "UPSTREAM_DIR": str(self.upstream_dir),
            "PID_FILE": str(self.root / "nginx.pid"),
            "NGINX": self.runner.nginx(self.root),
        }
        argv = self.runner.where_nginx_runs(self.command, env)
        return subprocess.run(
            [*argv, "/bin/sh", "-c", SWITCH_SCRIPT, "switch-upstream", service],
            input=servers + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def runtime_in(root: Path, *, legacy_http2: bool = False) -> NginxRuntime:
    """Paths inside `root`; no `user` line, so a root-run master drops workers to nobody."""
    return NginxRuntime(
        user=None,
        pid_path=str(root / "nginx.pid"),
        temp_dir=str(root),
        error_log=str(root / "error.log"),
        access_log=str(root / "access.log"),
        legacy_http2=legacy_http2,
    )


def write_tls_files(root: Path, tls: TlsFiles, listen_port: int) -> TlsConf:
    """The certificate files under `root` (mounted in the container too) and the `TlsConf`
    for them; the public port is the one nginx listens on, as nothing maps ports here."""
    (root / "tls").mkdir()
    (root / "tls" / "fullchain.pem").write_bytes(tls.chain_pem)
    (root / "tls" / "privkey.pem").write_bytes(tls.key_pem)
    webroot = root / "acme"
    if tls.acme_webroot:
        (webroot / ".well-known" / "acme-challenge").mkdir(parents=True)
    return TlsConf(
        certificate=str(root / "tls" / "fullchain.pem"),
        certificate_key=str(root / "tls" / "privkey.pem"),
        listen_port=listen_port,
        public_port=listen_port,
        hsts=tls.hsts,
        acme_webroot=str(webroot) if tls.acme_webroot else None,
    )


def nginx_check(
    render: Callable[[NginxRuntime], str], runner: NginxRunner | None = None
) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the config `render` returns for runtime paths in a throwaway prefix."""
    runner = runner or LocalNginx(nginx_binary())
    root = Path(tempfile.mkdtemp(prefix="astats-nginx-t-"))
    try:
        os.chmod(root, 0o755)
        runtime = runtime_in(root, legacy_http2=runner.legacy_http2)
        (root / "nginx.conf").write_text(render(runtime))
        command = runner.command(root, "-t")
        try:
            return subprocess.run(command, capture_output=True, text=True, check=False)
        finally:
            runner.cleanup(command)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def run_nginx(
    settings: NginxSettings,
    api_prefixes: Sequence[str],
    upstreams: Upstreams | None,
    *,
    runner: NginxRunner | None = None,
    assets_root: str | None = None,
    upstream_files: Mapping[str, str] | None = None,
    tls: TlsFiles | None = None,
) -> Iterator[Nginx]:
    """Render the config for a free loopback port and run nginx on it until the block ends;
    without `runner`, the machine's own nginx. With `upstreams` None, each upstream is
    switched as in Docker: its servers come from `<root>/upstreams/<service>.conf`, written
    from `upstream_files` (service -> `server` lines) before nginx starts. With `tls`, the app
    is served over HTTPS on a second free port (`Nginx.https_url`)."""
    runner = runner or LocalNginx(nginx_binary())
    root = Path(tempfile.mkdtemp(prefix="astats-nginx-"))
    os.chmod(root, 0o755)  # workers run as nobody and write proxy temp files here
    (root / "upstreams").mkdir()
    for service, servers in (upstream_files or {}).items():
        (root / "upstreams" / f"{service}.conf").write_text(servers + "\n")
    port = free_port()
    tls_conf = None
    if tls is not None:
        https_port = free_port()
        while https_port == port:
            https_port = free_port()
        tls_conf = write_tls_files(root, tls, https_port)
    config = render_nginx_conf(
        settings,
        api_prefixes,
        upstreams or SwitchedUpstreams(str(root / "upstreams")),
        listen_port=port,
        assets_root=assets_root,
        runtime=runtime_in(root, legacy_http2=runner.legacy_http2),
        tls=tls_conf,
    )
    (root / "nginx.conf").write_text(config)
    command = runner.command(root, "-g", "daemon off;")
    with (root / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    try:
        _wait_until_ok(f"http://127.0.0.1:{port}/healthz", process, root / "stderr.log", 20)
        yield Nginx(port, root, config, process, runner, command, tls_conf)
    finally:
        _stop(process)
        runner.cleanup(command)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def run_backend(
    port: int,
    *,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    workers: int = 1,
    python: str = sys.executable,
) -> Iterator[subprocess.Popen[bytes]]:
    """The demo backend under the Uvicorn command line the Pulumi program gives the container
    (`uvicorn_command`), started from the backend directory as the image's WORKDIR.

    `python` may name another interpreter, e.g. one with the image's requirements installed.
    """
    log = Path(tempfile.mkstemp(prefix="astats-uvicorn-", suffix=".log")[1])
    settings = BackendSettings(build=BuildSettings(context="."), port=port, workers=workers)
    program, *flags = uvicorn_command(settings)
    # The container binds every address of its own network namespace; on the test host only
    # `host` (loopback, or one of the addresses a re-resolution test moves between).
    flags = [f"--host={host}" if flag.startswith("--host=") else flag for flag in flags]
    command = [python, "-m", program, *flags, "--no-access-log"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=BACKEND_DIR,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        _wait_until_ok(f"http://{host}:{port}/health", process, log, 20)
        yield process
    finally:
        _stop(process)
        log.unlink(missing_ok=True)


FRONTEND_PAGE_REPEAT = 200


class _FrontendHandler(BaseHTTPRequestHandler):
    """Answers like a Next.js server would, including headers nginx is meant to override."""

    def do_GET(self) -> None:
        if self.path.startswith("/_next/static/"):
            body = b"console.log('chunk');\n" * 100
            content_type = "application/javascript"
            cache = "public, max-age=0"
        else:
            row = f"<p>served-by: frontend path={self.path}</p>\n"
            body = f"<html><body>{row * FRONTEND_PAGE_REPEAT}</body></html>".encode()
            content_type = "text/html; charset=utf-8"
            cache = "no-store"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Served-By", "frontend")
        self.send_header("X-Powered-By", "Next.js")
        self.send_header("X-Frame-Options", "DENY")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def run_frontend_stand_in(host: str = "127.0.0.1") -> Iterator[int]:
    server = ThreadingHTTPServer((host, 0), _FrontendHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()

"""Real processes for the proxy tests and the proxy benchmark.

nginx runs in the foreground from a temp prefix with the config `render_nginx_conf` produced,
either the machine's own nginx (Debian's 1.22) or, through `ContainerNginx`, a current nginx
in a local image with the host's network and the prefix bind-mounted at the same path, so both
see the same loopback upstreams, fake DNS and files. The demo backend runs under a real
Uvicorn started the way the Pulumi program starts it, a tiny `http.server` stands in for the
Next.js frontend, and a tiny DNS server plays Docker's embedded DNS so name re-resolution can
be watched on loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
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
from components.config import BackendSettings, BuildSettings, NginxSettings
from components.nginx_conf import NginxRuntime, UpstreamMode, Upstreams, render_nginx_conf

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PREFIXES = BackendSettings(build=BuildSettings(context=".")).api_prefixes
BACKEND_DIR = REPO / "examples" / "demo-app" / "backend"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


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

    @property
    def label(self) -> str:
        return f"nginx {nginx_version([self.binary, '-v'])} (local)"

    def command(self, root: Path, *args: str) -> list[str]:
        return [self.binary, "-p", str(root), "-c", str(root / "nginx.conf"), *args]

    def cleanup(self, command: Sequence[str]) -> None:
        pass


@dataclass(frozen=True)
class ContainerNginx:
    """nginx from a local image, on the host's network with `root` mounted at its own path."""

    image: str
    _names: dict[tuple[str, ...], str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        version = nginx_version(["docker", "run", "--rm", self.image, "nginx", "-v"])
        return f"nginx {version} (container {self.image})"

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

    def cleanup(self, command: Sequence[str]) -> None:
        # The docker client passes SIGTERM on to nginx; should it die first, the container
        # would outlive the test.
        name = self._names.pop(tuple(command), None)
        if name is not None:
            subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


NginxRunner = LocalNginx | ContainerNginx


@dataclass(frozen=True)
class NginxVariant:
    """One nginx program and the upstream mode its config is rendered in."""

    runner: NginxRunner
    upstream_mode: UpstreamMode

    def __str__(self) -> str:
        return f"{self.runner.label}, upstream_mode={self.upstream_mode}"


def nginx_version(command: Sequence[str]) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    output = result.stderr + result.stdout
    return output.split("nginx/", 1)[1].split()[0] if "nginx/" in output else "?"


def local_variant(upstream_mode: UpstreamMode = "variable") -> NginxVariant:
    return NginxVariant(LocalNginx(nginx_binary()), upstream_mode)


@dataclass
class Nginx:
    port: int
    root: Path
    config: str
    process: subprocess.Popen[bytes]
    variant: NginxVariant

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return _tail(self.root / "error.log", 100)


def runtime_in(root: Path) -> NginxRuntime:
    """Paths inside `root`; no `user` line, so a root-run master drops workers to nobody."""
    return NginxRuntime(
        user=None,
        pid_path=str(root / "nginx.pid"),
        temp_dir=str(root),
        error_log=str(root / "error.log"),
        access_log=str(root / "access.log"),
    )


def nginx_check(
    render: Callable[[NginxRuntime], str], runner: NginxRunner | None = None
) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the config `render` returns for runtime paths in a throwaway prefix."""
    runner = runner or LocalNginx(nginx_binary())
    root = Path(tempfile.mkdtemp(prefix="astats-nginx-t-"))
    try:
        os.chmod(root, 0o755)
        (root / "nginx.conf").write_text(render(runtime_in(root)))
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
    upstreams: Upstreams,
    *,
    resolver: str | None = None,
    variant: NginxVariant | None = None,
) -> Iterator[Nginx]:
    """Render the config in the variant's upstream mode for a free loopback port and run
    nginx on it until the block ends; without `variant`, the machine's own nginx in
    "variable" mode."""
    variant = variant or local_variant()
    root = Path(tempfile.mkdtemp(prefix="astats-nginx-"))
    os.chmod(root, 0o755)  # workers run as nobody and write proxy temp files here
    port = free_port()
    config = render_nginx_conf(
        settings.model_copy(update={"upstream_mode": variant.upstream_mode}),
        api_prefixes,
        upstreams,
        listen_port=port,
        resolver=resolver,
        runtime=runtime_in(root),
    )
    (root / "nginx.conf").write_text(config)
    command = variant.runner.command(root, "-g", "daemon off;")
    with (root / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    try:
        _wait_until_ok(f"http://127.0.0.1:{port}/healthz", process, root / "stderr.log", 20)
        yield Nginx(port=port, root=root, config=config, process=process, variant=variant)
    finally:
        _stop(process)
        variant.runner.cleanup(command)
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


class FakeDns:
    """A-record answers for a mutable table of names, like Docker's embedded DNS: a name
    held by several containers answers with all their addresses; an unknown name NXDOMAIN."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._records: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, addresses: Sequence[str]) -> None:
        with self._lock:
            if addresses:
                self._records[name] = list(addresses)
            else:
                self._records.pop(name, None)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
        self._sock.close()

    def _serve(self) -> None:
        while self._running:
            try:
                query, client = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(ValueError, IndexError, struct.error):
                self._sock.sendto(self._answer(query), client)

    def _answer(self, query: bytes) -> bytes:
        (ident,) = struct.unpack("!H", query[:2])
        labels, offset = [], 12
        while query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode().lower())
            offset += 1 + length
        question = query[12 : offset + 5]
        qtype, _ = struct.unpack("!HH", query[offset + 1 : offset + 5])
        with self._lock:
            addresses = list(self._records.get(".".join(labels), []))
        known = bool(addresses)
        answers = addresses if qtype == 1 else []
        flags = 0x8180 if known else 0x8183
        header = struct.pack("!HHHHHH", ident, flags, 1, len(answers), 0, 0)
        records = b"".join(
            struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(address)
            for address in answers
        )
        return header + question + records

"""What HTTPS costs at nginx: requests/s over HTTPS against plain HTTP, and the time of a new
TLS handshake against one resumed from nginx's session cache, in the same run, on loopback.

    ./venv/bin/python -m bench.bench_tls [--requests 6000] [--nginx-requests 30000]
        [--connections 16] [--rounds 5] [--handshakes 300] [--workers 1]
        [--backend-python PATH] [--variants debian,sid]

Each variant is an nginx program, as in bench/bench_proxy.py: `debian` the machine's nginx
(1.22 with OpenSSL 3.0 on Debian bookworm), `sid` a current nginx from a local Debian unstable
image (tests/proxy/nginx_image.py), each with the `http2` syntax of its release. The
certificate is an ECDSA P-256 leaf and its intermediate from a throwaway CA
(tests/proxy/tls_pki.py), as an ACME client gets from Let's Encrypt by default.

Throughput, keep-alive HTTP/1.1 clients, two paths:
* app: GET /health, proxied to Uvicorn. Over HTTPS through the TLS config; over plain HTTP
  through the same nginx program with the same settings and TLS off (with TLS on, plain HTTP
  only redirects).
* nginx: GET /healthz, answered by nginx itself, over HTTPS and plain HTTP of the very same
  process: TLS's cost with nothing else to hide it, the worst case.
Each round measures HTTP and HTTPS back to back, alternating which goes first, so a noisy
neighbour hits them alike; the ratio is the median of the rounds' HTTPS/HTTP ratios. The
client is Python, whose TLS costs it more than nginx's costs nginx, so the nginx path's
requests/s mostly measure the client; nginx's own cost is its processes' CPU time per
request (/proc/<pid>/stat, host-visible for the container too; all rounds' CPU over all their
requests, as the kernel counts in 10 ms ticks), and the "nginx-bound" ratio is what the
requests/s ratio would be were nginx the bottleneck: HTTP's CPU per request over HTTPS's.

Handshakes: TCP connect plus the TLS handshake (the client verifies the chain on a new one),
new and resumed alternating, for TLS 1.2 and 1.3. Tickets are off, so resumption is by the
session cache (for TLS 1.3 a ticket that only names the cached session); each resumed
connection reuses the session the previous connection left.

Target: HTTPS at least 0.8 of plain HTTP's requests/s. Not a test: the figures depend on the
machine, and the client is Python sharing its cores with nginx and Uvicorn, so nothing here
asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from components.config import BackendSettings, BuildSettings, NginxSettings
from tests.proxy import harness, nginx_image, tls_pki

PREFIXES = BackendSettings(build=BuildSettings(context=".")).api_prefixes
TARGET_RATIO = 0.8
DEFAULT_VARIANTS = "debian,sid"
VERSIONS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


@dataclass(frozen=True)
class Endpoint:
    port: int
    path: str
    tls: ssl.SSLContext | None = None
    root: Path | None = None
    """The nginx prefix, which names its processes (see `nginx_cpu_s`)."""


@dataclass(frozen=True)
class Run:
    requests: int
    per_second: float
    nginx_cpu_s: float
    """nginx's CPU time over the run, all its processes."""


def cpu_per_request_us(runs: list[Run]) -> float:
    return sum(run.nginx_cpu_s for run in runs) / sum(run.requests for run in runs) * 1e6


def nginx_cpu_s(root: Path) -> float:
    """CPU seconds (user + system) of the nginx master started with prefix `root` and of its
    workers; nginx rewrites its command line to `nginx: master process <argv>`."""
    commands: dict[int, str] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if command.startswith("nginx:"):
                commands[int(entry.name)] = command
                # The fields after the command name, from the 3rd (state) on.
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    masters = {pid for pid, command in commands.items() if f"-p {root} " in command}
    if not masters:
        raise SystemExit(f"no nginx master for {root}")
    ppid, utime, stime = 4 - 3, 14 - 3, 15 - 3
    ticks = sum(
        int(fields[utime]) + int(fields[stime])
        for pid, fields in stats.items()
        if pid in masters or int(fields[ppid]) in masters
    )
    return ticks / os.sysconf("SC_CLK_TCK")


async def _connect(
    endpoint: Endpoint,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1",
        endpoint.port,
        ssl=endpoint.tls,
        server_hostname=tls_pki.LEAF_NAME if endpoint.tls else None,
    )


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def _client(endpoint: Endpoint, count: int) -> int:
    """Keep-alive GETs, on a new connection whenever nginx closes one (after
    keepalive_requests, 1000); returns how many were not 200."""
    reader, writer = await _connect(endpoint)
    request = f"GET {endpoint.path} HTTP/1.1\r\nHost: {tls_pki.LEAF_NAME}\r\n\r\n".encode()
    errors = 0
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").lower().split("\r\n")
            if " 200 " not in status_line:
                errors += 1
            length = next(
                int(line.split(":", 1)[1])
                for line in header_lines
                if line.startswith("content-length:")
            )
            await reader.readexactly(length)
            if "connection: close" in header_lines:
                await _close(writer)
                reader, writer = await _connect(endpoint)
    finally:
        await _close(writer)
    return errors


async def _load(endpoint: Endpoint, requests: int, connections: int) -> float:
    started = time.perf_counter()
    errors = await asyncio.gather(
        *(_client(endpoint, requests // connections) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    if sum(errors):
        raise SystemExit(f"{sum(errors)} failed requests on port {endpoint.port}")
    return requests / elapsed


def measure(endpoint: Endpoint, total: int, connections: int) -> Run:
    asyncio.run(_load(endpoint, connections * 20, connections))  # warm-up
    assert endpoint.root is not None
    requests = total // connections * connections
    cpu_before = nginx_cpu_s(endpoint.root)
    per_second = asyncio.run(_load(endpoint, requests, connections))
    return Run(requests, per_second, nginx_cpu_s(endpoint.root) - cpu_before)


def _client_context(ca: Path, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if version is not None:
        context.minimum_version = version
        context.maximum_version = version
    return context


def handshake_ms(
    port: int, context: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[float, ssl.SSLSession | None, bool]:
    """Connect and handshake (timed), then one request, after which a TLS 1.3 server has
    sent the session to resume with; the session and whether this one was resumed."""
    started = time.perf_counter()
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with context.wrap_socket(raw, server_hostname=tls_pki.LEAF_NAME, session=session) as tls:
        elapsed = (time.perf_counter() - started) * 1000
        tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {tls_pki.LEAF_NAME}\r\n\r\n".encode())
        received = b""
        while not received.endswith(b"ok\n"):
            chunk = tls.recv(4096)
            if not chunk:
                break
            received += chunk
        return elapsed, tls.session, bool(tls.session_reused)


@dataclass
class Handshakes:
    new: list[float]
    resumed: list[float]
    reused: int


def handshakes(port: int, ca: Path, version: ssl.TLSVersion, pairs: int) -> Handshakes:
    context = _client_context(ca, version)
    _, session, _ = handshake_ms(port, context, None)
    result = Handshakes([], [], 0)
    for _ in range(pairs):
        elapsed, _, _ = handshake_ms(port, context, None)
        result.new.append(elapsed)
        elapsed, next_session, reused = handshake_ms(port, context, session)
        result.resumed.append(elapsed)
        result.reused += reused
        session = next_session or session
    return result


def _variant(name: str) -> harness.NginxRunner:
    if name == "debian":
        return harness.LocalNginx(harness.nginx_binary())
    if name == "sid":
        return harness.ContainerNginx(nginx_image.nginx_image())
    raise SystemExit(f"unknown variant {name!r}: debian or sid")


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000, help="per run via Uvicorn")
    parser.add_argument(
        "--nginx-requests", type=int, default=30_000, help="per run answered by nginx"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved HTTP/HTTPS pairs")
    parser.add_argument("--handshakes", type=int, default=300, help="new/resumed pairs")
    parser.add_argument("--workers", type=int, default=1, help="Uvicorn workers")
    parser.add_argument(
        "--backend-python",
        default=sys.executable,
        help="interpreter for Uvicorn, e.g. a venv with the image's requirements.txt",
    )
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated")
    args = parser.parse_args()
    variants = {name: _variant(name) for name in args.variants.split(",") if name}

    pki = tls_pki.make_pki()
    backend_port = harness.free_port()
    with contextlib.ExitStack() as stack:
        ca = pki.write_ca(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        stack.enter_context(
            harness.run_backend(backend_port, workers=args.workers, python=args.backend_python)
        )
        frontend_port = stack.enter_context(harness.run_frontend_stand_in())
        switched = {
            "backend": f"server 127.0.0.1:{backend_port};",
            "frontend": f"server 127.0.0.1:{frontend_port};",
        }
        tls_files = harness.TlsFiles(pki.chain_pem, pki.key_pem)
        https_context = _client_context(ca)
        paths: dict[tuple[str, str], tuple[Endpoint, Endpoint]] = {}
        labels: dict[str, str] = {}
        for name, runner in variants.items():
            plain = stack.enter_context(
                harness.run_nginx(
                    NginxSettings(), PREFIXES, None, runner=runner, upstream_files=switched
                )
            )
            secure = stack.enter_context(
                harness.run_nginx(
                    NginxSettings(),
                    PREFIXES,
                    None,
                    runner=runner,
                    upstream_files=switched,
                    tls=tls_files,
                )
            )
            labels[name] = runner.label
            paths[(name, "app")] = (
                Endpoint(plain.port, "/health", root=plain.root),
                Endpoint(secure.https_port, "/health", https_context, secure.root),
            )
            paths[(name, "nginx")] = (
                Endpoint(secure.port, "/healthz", root=secure.root),
                Endpoint(secure.https_port, "/healthz", https_context, secure.root),
            )

        runs: dict[tuple[str, str], tuple[list[Run], list[Run]]] = {key: ([], []) for key in paths}
        for round_ in range(args.rounds):
            for key, (http, https) in paths.items():
                order = [(0, http), (1, https)]
                for index, endpoint in order if round_ % 2 == 0 else reversed(order):
                    total = args.requests if key[1] == "app" else args.nginx_requests
                    runs[key][index].append(measure(endpoint, total, args.connections))

        shakes = {
            (name, version): handshakes(
                paths[(name, "nginx")][1].port, ca, version, args.handshakes
            )
            for name in variants
            for version in VERSIONS
        }

    print(f"backend: {args.backend_python} -m uvicorn, {args.workers} worker(s)")
    print(
        f"GET, {args.connections} keep-alive HTTP/1.1 connections, {args.rounds} interleaved "
        "HTTP/HTTPS pairs; ratio = median of the pairs' ratios (a Python client: see above)"
    )
    for (name, path), (plain_runs, tls_runs) in runs.items():
        plain_rps = [run.per_second for run in plain_runs]
        tls_rps = [run.per_second for run in tls_runs]
        ratio = statistics.median(s / p for p, s in zip(plain_rps, tls_rps, strict=True))
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        plain_cpu, tls_cpu = cpu_per_request_us(plain_runs), cpu_per_request_us(tls_runs)
        bound = plain_cpu / tls_cpu
        if path == "app":
            what = f"/health via Uvicorn, {args.requests} requests a run"
        else:
            what = f"/healthz by nginx, {args.nginx_requests} requests a run"
        print(
            f"  {name:<7} {what}\n"
            f"  {'':<7} http {statistics.median(plain_rps):7.0f} req/s  "
            f"https {statistics.median(tls_rps):7.0f} req/s  ratio {ratio:.2f} "
            f"({verdict} >= {TARGET_RATIO})\n"
            f"  {'':<7} runs http: {_fmt(plain_rps)}; https: {_fmt(tls_rps)}\n"
            f"  {'':<7} nginx CPU per request: http {plain_cpu:.1f} us  https {tls_cpu:.1f} us"
            f"  nginx-bound ratio {bound:.2f} "
            f"({'meets' if bound >= TARGET_RATIO else 'MISSES'} >= {TARGET_RATIO})"
        )
    for name, label in labels.items():
        print(f"  {name}: {label}")
    print(f"TLS handshakes (TCP connect + handshake), {args.handshakes} new/resumed pairs")
    for (name, version), result in shakes.items():
        new, resumed = statistics.median(result.new), statistics.median(result.resumed)
        print(
            f"  {name:<7} {version.name.replace('_', '.'):<8}: new p50 {new:.3f} ms "
            f"p90 {_percentile(result.new, 0.9):.3f}  resumed p50 {resumed:.3f} ms "
            f"p90 {_percentile(result.resumed, 0.9):.3f}  resumed/new {resumed / new:.2f}  "
            f"(resumed {result.reused}/{args.handshakes})"
        )


if __name__ == "__main__":
    main()

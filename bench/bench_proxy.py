"""What nginx costs: requests/s and WebSocket round-trip latency, through the rendered nginx
config versus straight to Uvicorn, in the same run, on loopback.

    ./venv/bin/python -m bench.bench_proxy [--requests 6000] [--connections 16]
        [--round-trips 2000] [--rounds 3] [--workers 1] [--backend-python PATH]
        [--variants debian,sid]

Each variant is an nginx program: `debian` the machine's nginx (1.22 on Debian bookworm), `sid`
a current nginx from a local Debian unstable image (tests/proxy/nginx_image.py, built on first
use) on the host's network. The config is the stack's, with its upstreams switched as in Docker:
each upstream block includes the file the traffic switch writes, and keeps idle connections.
Rounds alternate direct and every variant so a noisy neighbour hits them alike.

Targets: through nginx at least 0.9 of direct throughput; under 1 ms added WebSocket p50.
Not a test: the figures depend on the machine, so nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass

from websockets.sync.client import connect

from components.config import BackendSettings, BuildSettings, NginxSettings
from tests.proxy import harness, nginx_image

PREFIXES = BackendSettings(build=BuildSettings(context=".")).api_prefixes
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_ADDED_P50_MS = 1.0
DEFAULT_VARIANTS = "debian,sid"


@dataclass(frozen=True)
class Throughput:
    requests: int
    seconds: float
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


async def _client(port: int, path: str, count: int) -> int:
    """Keep-alive GETs on one connection; returns how many were not 200."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    errors = 0
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            if " 200 " not in status_line:
                errors += 1
            length = next(
                int(line.split(":", 1)[1])
                for line in header_lines
                if line.lower().startswith("content-length:")
            )
            await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()
    return errors


async def _load(port: int, path: str, total: int, connections: int) -> Throughput:
    per_connection = total // connections
    started = time.perf_counter()
    errors = await asyncio.gather(
        *(_client(port, path, per_connection) for _ in range(connections))
    )
    return Throughput(per_connection * connections, time.perf_counter() - started, sum(errors))


def throughput(port: int, total: int, connections: int) -> Throughput:
    asyncio.run(_load(port, "/health", connections * 20, connections))  # warm-up
    return asyncio.run(_load(port, "/health", total, connections))


def round_trips_ms(url: str, count: int) -> list[float]:
    samples = []
    with connect(url, ping_interval=None, compression=None) as socket:
        for _ in range(50):  # warm-up
            socket.send("ping")
            socket.recv(timeout=5)
        for _ in range(count):
            started = time.perf_counter()
            socket.send("ping")
            socket.recv(timeout=5)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _variant(name: str) -> harness.NginxRunner:
    if name == "debian":
        return harness.LocalNginx(harness.nginx_binary())
    if name == "sid":
        return harness.ContainerNginx(nginx_image.nginx_image())
    raise SystemExit(f"unknown variant {name!r}: debian or sid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/nginx runs")
    parser.add_argument("--workers", type=int, default=1, help="Uvicorn workers")
    parser.add_argument(
        "--backend-python",
        default=sys.executable,
        help="interpreter for Uvicorn, e.g. a venv with the image's requirements.txt "
        "(uvicorn[standard]: httptools, uvloop)",
    )
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated")
    args = parser.parse_args()
    variants = {name: _variant(name) for name in args.variants.split(",") if name}

    backend_port = harness.free_port()
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            harness.run_backend(backend_port, workers=args.workers, python=args.backend_python)
        )
        frontend_port = stack.enter_context(harness.run_frontend_stand_in())
        switched = {
            "backend": f"server 127.0.0.1:{backend_port};",
            "frontend": f"server 127.0.0.1:{frontend_port};",
        }
        proxies = {
            name: stack.enter_context(
                harness.run_nginx(
                    NginxSettings(), PREFIXES, None, runner=variant, upstream_files=switched
                )
            )
            for name, variant in variants.items()
        }
        rps: dict[str, list[float]] = {name: [] for name in ["direct", *proxies]}
        ws: dict[str, list[float]] = {name: [] for name in ["direct", *proxies]}
        ports = {"direct": backend_port} | {name: proxy.port for name, proxy in proxies.items()}
        for _ in range(args.rounds):
            for name, port in ports.items():
                result = throughput(port, args.requests, args.connections)
                if result.errors:
                    raise SystemExit(f"{result.errors} failed requests via {name}")
                rps[name].append(result.per_second)
            for name, port in ports.items():
                ws[name] += round_trips_ms(
                    f"ws://127.0.0.1:{port}/ws/dev-cockpit", args.round_trips
                )

    direct = statistics.median(rps["direct"])
    direct_p50 = statistics.median(ws["direct"])
    print(f"backend: {args.backend_python} -m uvicorn, {args.workers} worker(s)")
    print("upstreams: switched files, idle connections kept")
    print(f"HTTP GET /health, {args.connections} keep-alive connections, median of {args.rounds}")
    print(f"  {'direct to Uvicorn':<18}: {direct:8.0f} req/s   (runs: {_fmt(rps['direct'])})")
    for name, proxy in proxies.items():
        proxied = statistics.median(rps[name])
        ratio = proxied / direct
        verdict = "meets" if ratio >= TARGET_THROUGHPUT_RATIO else "MISSES"
        print(
            f"  {name:<18}: {proxied:8.0f} req/s   ratio {ratio:.2f} "
            f"({verdict} >= {TARGET_THROUGHPUT_RATIO})   (runs: {_fmt(rps[name])})"
            f"\n  {'':<18}  {proxy.runner.label}"
        )
    print(f"WebSocket echo round trip, {args.rounds} x {args.round_trips} sequential messages")
    print(
        f"  {'direct':<18}: p50 {direct_p50:.3f} ms  p99 {_percentile(ws['direct'], 0.99):.3f} ms"
    )
    for name in proxies:
        p50 = statistics.median(ws[name])
        added = p50 - direct_p50
        verdict = "meets" if added < TARGET_ADDED_P50_MS else "MISSES"
        print(
            f"  {name:<18}: p50 {p50:.3f} ms  p99 {_percentile(ws[name], 0.99):.3f} ms  "
            f"added p50 {added:.3f} ms ({verdict} < {TARGET_ADDED_P50_MS} ms)"
        )


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


if __name__ == "__main__":
    main()

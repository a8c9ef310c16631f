"""What nginx costs: requests/s and WebSocket round-trip latency, through the rendered nginx
config versus straight to Uvicorn, in the same run, on loopback.

    ./venv/bin/python -m bench.bench_proxy [--requests 6000] [--connections 16]
        [--round-trips 2000] [--workers 1] [--backend-python PATH]

Targets: through nginx at least 0.8 of direct throughput; under 1 ms added WebSocket p50.
Not a test: the figures depend on the machine, so nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass

from websockets.sync.client import connect

from components.config import BackendSettings, BuildSettings, NginxSettings
from components.nginx_conf import Upstreams
from tests.proxy import harness

PREFIXES = BackendSettings(build=BuildSettings(context=".")).api_prefixes
TARGET_THROUGHPUT_RATIO = 0.8
TARGET_ADDED_P50_MS = 1.0


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
    args = parser.parse_args()

    backend_port = harness.free_port()
    with (
        harness.run_backend(backend_port, workers=args.workers, python=args.backend_python),
        harness.run_frontend_stand_in() as frontend_port,
        harness.run_nginx(
            NginxSettings(),
            PREFIXES,
            Upstreams(f"127.0.0.1:{backend_port}", f"127.0.0.1:{frontend_port}"),
        ) as nginx,
    ):
        direct_rps: list[float] = []
        proxied_rps: list[float] = []
        direct_ws: list[float] = []
        proxied_ws: list[float] = []
        for _ in range(args.rounds):
            for port, sink in ((backend_port, direct_rps), (nginx.port, proxied_rps)):
                result = throughput(port, args.requests, args.connections)
                if result.errors:
                    raise SystemExit(f"{result.errors} failed requests on port {port}")
                sink.append(result.per_second)
            direct_ws += round_trips_ms(
                f"ws://127.0.0.1:{backend_port}/ws/dev-cockpit", args.round_trips
            )
            proxied_ws += round_trips_ms(nginx.ws_url("/ws/dev-cockpit"), args.round_trips)

    direct, proxied = statistics.median(direct_rps), statistics.median(proxied_rps)
    ratio = proxied / direct
    direct_p50, proxied_p50 = statistics.median(direct_ws), statistics.median(proxied_ws)
    added_p50 = proxied_p50 - direct_p50
    print(f"backend: {args.backend_python} -m uvicorn, {args.workers} worker(s)")
    print(f"HTTP GET /health, {args.connections} keep-alive connections, median of {args.rounds}")
    print(f"  direct to Uvicorn : {direct:8.0f} req/s   (runs: {_fmt(direct_rps)})")
    print(f"  through nginx     : {proxied:8.0f} req/s   (runs: {_fmt(proxied_rps)})")
    verdict = "meets" if ratio >= TARGET_THROUGHPUT_RATIO else "MISSES"
    print(f"  ratio             : {ratio:8.2f}   ({verdict} target >= {TARGET_THROUGHPUT_RATIO})")
    print(f"WebSocket echo round trip, {args.rounds} x {args.round_trips} sequential messages")
    print(
        f"  direct  p50 {direct_p50:.3f} ms  p99 {_percentile(direct_ws, 0.99):.3f} ms"
        f"\n  nginx   p50 {proxied_p50:.3f} ms  p99 {_percentile(proxied_ws, 0.99):.3f} ms"
    )
    verdict = "meets" if added_p50 < TARGET_ADDED_P50_MS else "MISSES"
    print(f"  added p50 {added_p50:.3f} ms ({verdict} target < {TARGET_ADDED_P50_MS} ms)")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


if __name__ == "__main__":
    main()

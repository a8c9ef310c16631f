"""What one Docker health check of a web service costs in CPU, for each check command we could
give the backend and the frontend, measured on this machine's engine in the same run.

    ./venv/bin/python -m bench.bench_healthcheck [--seconds 30] [--interval 1] [--rounds 1]
        [--only backend,frontend]

Each candidate runs as the health check of a container serving HTTP: the demo backend's image
(Uvicorn, GET /health; built from its Dockerfile on the python:3.11-slim stand-in) for the
python candidates, a one-line Node HTTP server on the node:20-slim stand-in (GET /) for the node
ones; the shell probes run in both. One container at a time, checked every --interval seconds
for --seconds once its server answers. A container of the same image with no health check, run
before and after each image's candidates, is the baseline every figure is taken against.

What a check costs, in ms of CPU per check, each figure less the baseline's over the same time:
* check: the container's cgroup (cpuacct.usage or cpu.stat) less its server process: the check
  command and the part of `runc init` that runs after it joins the cgroup (`true` shows that
  floor);
* server: the server process answering the check (its /proc utime+stime, all threads);
* shim+runc: the container's containerd-shim and what it reaped (runc, and the check process,
  taken off again), from its /proc utime+stime+cutime+cstime;
* d+c: dockerd and containerd, from their threads' schedstat. They serve every container on the
  machine, and another one starting costs them hundreds of ms: the counters are read at each
  check's exec_die event and the figure is the median over checks, less the quieter
  baseline's median rate (the window's mean beside the total shows what the bursts add). The
  parts above are this container's alone: window means.
Checks are counted from the engine's exec_die events, which also give each check's exit code
and wall time.

Then every candidate runs once, by `docker exec` under `timeout`, in containers whose port is
refused, answers 503, or accepts and never answers: does the check fail, and how fast.

Target: at most 10 ms per check in all (1 % of a core at one check a second; 20 ms at one
every 2 s). Not a test: the figures depend on the machine, so nothing here asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from docker.client import DockerClient, from_env
from docker.models.containers import Container

from components.backend import http_health_test
from components.frontend import node_health_test
from tests.docker.images import BASE_TAG, SUITE
from tests.docker.python_image import backend_image, python_standin
from tests.e2e.images import node_standin
from tests.support.debian_images import debian_base

TARGET_MS_AT = {1: 10.0, 2: 20.0}
SETTLE_S = 3.0
HUNG_BOUND_S = 15
# dockerd+containerd ms/s above which an idle engine is doing someone else's work.
BUSY_ENGINE = 10.0
CLOCK_TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
NS = 1_000_000_000
LABEL = "astats-bench-healthcheck"


def bash_probe(port: int, path: str, healthy_status: str) -> list[str]:
    """An HTTP/1.0 GET through bash's /dev/tcp: no program but bash, which both images have."""
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port}"
        f" && printf 'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3"
        " && read -r -t 2 _ status _ <&3"
        f" && case $status in {healthy_status}) exit 0;; esac; exit 1"
    )
    return ["CMD", "bash", "-c", script]


def python_socket_probe(port: int, path: str) -> list[str]:
    """A raw-socket GET in an isolated interpreter without site: no urllib, http or ssl."""
    script = (
        "import socket; "
        f"s = socket.create_connection(('127.0.0.1', {port}), 2); "
        f"s.sendall(b'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n'); "
        "status = s.makefile('rb').readline(100).split()[1:2]; "
        "raise SystemExit(0 if status and status[0][:1] in (b'2', b'3') else 1)"
    )
    return ["CMD", "python", "-I", "-S", "-c", script]


def node_http_probe(port: int, path: str) -> list[str]:
    script = (
        f"require('http').get('http://127.0.0.1:{port}{path}', "
        "r => process.exit(r.statusCode < 500 ? 0 : 1)).on('error', () => process.exit(1))"
    )
    return ["CMD", "node", "-e", script]


@dataclass(frozen=True)
class Server:
    """An image and the commands that make its port answer, refuse, fail or hang."""

    name: str
    image: str
    port: int
    path: str
    up: list[str] | None  # None: the image's own command
    failing: list[str]
    hung: list[str]
    user: str | None = None
    candidates: dict[str, list[str]] = field(default_factory=dict)


def python_servers(image: str) -> Server:
    port, path = 8000, "/health"
    failing = (
        "import http.server as h\n"
        "class H(h.BaseHTTPRequestHandler):\n"
        "    def do_GET(self): self.send_response(503); self.end_headers()\n"
        f"h.HTTPServer(('', {port}), H).serve_forever()"
    )
    hung = (
        f"import socket, time\ns = socket.create_server(('', {port}), backlog=64)\ntime.sleep(1e9)"
    )
    return Server(
        name="backend",
        image=image,
        port=port,
        path=path,
        up=None,
        failing=["python", "-c", failing],
        hung=["python", "-c", hung],
        candidates={
            "true (engine floor)": ["CMD", "true"],
            "python urllib (current)": http_health_test(port, path),
            "python -I -S socket": python_socket_probe(port, path),
            "bash /dev/tcp": bash_probe(port, path, "[23]??"),
        },
    )


def node_servers(image: str) -> Server:
    port, path = 3000, "/"
    return Server(
        name="frontend",
        image=image,
        port=port,
        path=path,
        up=["node", "-e", f"require('http').createServer((q, s) => s.end('ok')).listen({port})"],
        failing=[
            "node",
            "-e",
            "require('http').createServer((q, s) => { s.statusCode = 503; s.end(); })"
            f".listen({port})",
        ],
        hung=["node", "-e", f"require('net').createServer(() => {{}}).listen({port})"],
        user="1000:1000",
        candidates={
            "true (engine floor)": ["CMD", "true"],
            "node fetch (current)": node_health_test(port, path),
            "node http": node_http_probe(port, path),
            "bash /dev/tcp": bash_probe(port, path, "[234]??"),
        },
    )


# ---- CPU counters -------------------------------------------------------------------------


def _stat_ms(pid: int, *, reaped: bool) -> float:
    """utime+stime of a whole process (all threads), and with `reaped` its waited-for
    children's, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks * CLOCK_TICK_MS


def _processes() -> Iterator[tuple[int, str, bytes]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                yield (
                    int(entry.name),
                    (entry / "comm").read_text().strip(),
                    (entry / "cmdline").read_bytes(),
                )


def engine_pids() -> list[int]:
    pids = [pid for pid, comm, _ in _processes() if comm in ("dockerd", "containerd")]
    if not pids:
        raise SystemExit("no dockerd or containerd process is visible in /proc")
    return pids


def shim_pid(container_id: str) -> int:
    for pid, comm, cmdline in _processes():
        if comm.startswith("containerd-shim") and container_id.encode() in cmdline:
            return pid
    raise SystemExit(f"no containerd-shim found for container {container_id[:12]}")


def cgroup_usage_file(pid: int) -> tuple[Path, float]:
    """The file holding the CPU time of `pid`'s cgroup, and its unit in ms (v1 or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            for mount in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
                usage = Path("/sys/fs/cgroup", mount, path.lstrip("/"), "cpuacct.usage")
                if usage.is_file():
                    return usage, 1e-6
        if controllers == "":
            stat = Path("/sys/fs/cgroup", path.lstrip("/"), "cpu.stat")
            if stat.is_file() and not Path("/sys/fs/cgroup/cpuacct").exists():
                return stat, 1e-3
    raise SystemExit(f"no cgroup CPU accounting found for pid {pid}")


def _read_usage(usage: Path, unit_ms: float) -> float:
    text = usage.read_text()
    if usage.name == "cpu.stat":
        text = next(line.split()[1] for line in text.splitlines() if line.startswith("usage_usec"))
    return int(text) * unit_ms


def _threads_ms(pid: int) -> float:
    """CPU time of a process's live threads, in ms, at the scheduler's ns resolution."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e6


@dataclass(frozen=True)
class Sample:
    at: float
    cgroup_ms: float
    server_ms: float
    shim_ms: float  # the container's shim and what it reaped: runc and the check processes
    shared_ms: float  # dockerd and containerd, which serve every container on the machine


class Meter:
    """Reads one container's CPU counters and the engine's."""

    def __init__(self, container: Container) -> None:
        self.server_pid = int(container.attrs["State"]["Pid"])
        self.usage, self.unit_ms = cgroup_usage_file(self.server_pid)
        self.engine = engine_pids()
        self.shim = shim_pid(container.id)

    def sample(self) -> Sample:
        return Sample(
            at=time.monotonic(),
            cgroup_ms=_read_usage(self.usage, self.unit_ms),
            server_ms=_stat_ms(self.server_pid, reaped=False),
            shim_ms=_stat_ms(self.shim, reaped=True),
            shared_ms=sum(_threads_ms(pid) for pid in self.engine),
        )


# ---- one measured container ---------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """CPU over a measured window, in ms, and the health checks that finished in it."""

    seconds: float
    check_ms: float  # the container's cgroup less its server process
    server_ms: float
    shim_ms: float  # less the check processes it reaped
    shared_ms: float
    steps: list[tuple[float, float]]  # (s, dockerd+containerd ms) from one check's end to the next
    checks: int
    failed: int
    period_s: float
    wall_ms: float
    status: str

    def rate(self, part: str) -> float:
        return float(getattr(self, part)) / self.seconds


class ExecEvents:
    """The engine's exec events for one container, as they happen; the counters are read as
    each check's exec_die arrives, so the engine's CPU can be split check by check."""

    def __init__(self, client: DockerClient, container_id: str, meter: Meter) -> None:
        self.meter = meter
        self.stream = client.events(filters={"container": container_id}, decode=True)
        self.starts: dict[str, int] = {}
        self.dies: list[tuple[int, int, int, Sample]] = []  # start ns, die ns, exit code
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(Exception):
            for event in self.stream:
                action = event.get("Action", "")
                attributes = event.get("Actor", {}).get("Attributes", {})
                exec_id = attributes.get("execID", "")
                if action.startswith("exec_start"):
                    self.starts[exec_id] = int(event["timeNano"])
                elif action == "exec_die" and exec_id in self.starts:
                    sample = self.meter.sample()
                    code = int(attributes.get("exitCode", -1))
                    start = self.starts.pop(exec_id)
                    self.dies.append((start, int(event["timeNano"]), code, sample))

    def close(self) -> None:
        self.stream.close()


def _wait_until_answering(container: Container, server: Server) -> None:
    address = container.attrs["NetworkSettings"]["IPAddress"]
    url = f"http://{address}:{server.port}{server.path}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{server.name}: {url} did not answer within 90 s")


@contextlib.contextmanager
def running(
    client: DockerClient,
    server: Server,
    command: list[str] | None,
    test: list[str] | None = None,
    interval_s: float = 1.0,
) -> Iterator[Container]:
    healthcheck = None
    if test is not None:
        healthcheck = {
            "test": test,
            "interval": int(interval_s * NS),
            "timeout": 3 * NS,
            "retries": 3,
            "start_period": 0,
        }
    container = client.containers.run(
        server.image,
        command,
        detach=True,
        user=server.user,
        healthcheck=healthcheck,
        labels={LABEL: str(os.getpid())},
        name=f"{LABEL}-{os.getpid()}-{time.monotonic_ns()}",
    )
    try:
        container.reload()
        yield container
    finally:
        container.remove(force=True)


def measure(
    client: DockerClient,
    server: Server,
    test: list[str] | None,
    seconds: float,
    interval_s: float,
) -> Window:
    with running(client, server, server.up, test, interval_s) as container:
        meter = Meter(container)
        events = ExecEvents(client, container.id, meter)
        try:
            _wait_until_answering(container, server)
            time.sleep(SETTLE_S)
            samples = [meter.sample()]
            start_ns = time.time_ns()
            while samples[-1].at - samples[0].at < seconds:
                time.sleep(min(interval_s, seconds - (samples[-1].at - samples[0].at)))
                samples.append(meter.sample())
            end_ns = time.time_ns()
        finally:
            events.close()
        container.reload()
        status = container.attrs["State"].get("Health", {}).get("Status", "none")
    first, last = samples[0], samples[-1]
    done = [die for die in events.dies if start_ns <= die[1] < end_ns]
    # Without checks the timer's samples split the window; with them, each check's exec_die.
    marks = [die[3] for die in done] if test is not None else samples
    starts = sorted(die[0] for die in done)
    check = (last.cgroup_ms - first.cgroup_ms) - (last.server_ms - first.server_ms)
    return Window(
        seconds=last.at - first.at,
        check_ms=check,
        server_ms=last.server_ms - first.server_ms,
        shim_ms=last.shim_ms - first.shim_ms - check,
        shared_ms=last.shared_ms - first.shared_ms,
        steps=[(b.at - a.at, b.shared_ms - a.shared_ms) for a, b in itertools.pairwise(marks)],
        checks=len(done),
        failed=sum(1 for die in done if die[2] != 0),
        period_s=(starts[-1] - starts[0]) / NS / (len(starts) - 1) if len(starts) > 1 else 0,
        wall_ms=statistics.median((die - start) / 1e6 for start, die, *_ in done) if done else 0,
        status=status,
    )


# ---- a server that is down ----------------------------------------------------------------


def detection(client: DockerClient, server: Server) -> dict[str, dict[str, str]]:
    """Each candidate's verdict, run once by `docker exec`, per kind of down server."""
    down = {
        "refused": ["sleep", "infinity"],
        "503": server.failing,
        "hung": server.hung,
    }
    verdicts: dict[str, dict[str, str]] = {name: {} for name in server.candidates}
    for kind, command in down.items():
        with running(client, server, command) as container:
            if kind != "refused":
                _wait_until_answering_or_hung(container, server)
            for name, test in server.candidates.items():
                argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
                started = time.perf_counter()
                code, _ = container.exec_run(["timeout", str(HUNG_BOUND_S), *argv])
                took = time.perf_counter() - started
                if code == 124:
                    verdicts[name][kind] = f"waits >{HUNG_BOUND_S} s"
                elif code == 0:
                    verdicts[name][kind] = "HEALTHY"
                else:
                    verdicts[name][kind] = f"fails {took:.1f} s"
    return verdicts


def _wait_until_answering_or_hung(container: Container, server: Server) -> None:
    """Wait until the port accepts connections (a hung server never answers them)."""
    address = container.attrs["NetworkSettings"]["IPAddress"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address, server.port), 1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{server.name}: the down server's port never opened")


# ---- report -------------------------------------------------------------------------------


OWN_PARTS = ("check_ms", "server_ms", "shim_ms")


@dataclass(frozen=True)
class Baseline:
    """What the container and the engine spend with no health check, in ms per second."""

    own: dict[str, float]
    # The quieter window's median step: other work only ever adds to dockerd's and containerd's
    # CPU, in bursts (a container starting) or for a whole window (an image build).
    shared: float

    @classmethod
    def of(cls, windows: list[Window]) -> Baseline:
        return cls(
            own={part: statistics.mean(w.rate(part) for w in windows) for part in OWN_PARTS},
            shared=min(statistics.median(ms / s for s, ms in w.steps) for w in windows),
        )


def per_check(window: Window, baseline: Baseline) -> dict[str, float]:
    """ms per check of each part, the baseline's over the same time taken off.

    The container's, its server's and its shim's CPU are this container's alone: their
    window's mean. dockerd's and containerd's is the median over the window's checks, each from
    one check's exec_die to the next, so another container's start lands in a few of them only.
    """
    figures = {
        part: (getattr(window, part) - baseline.own[part] * window.seconds) / window.checks
        for part in OWN_PARTS
    }
    figures["shared_ms"] = statistics.median(ms - baseline.shared * s for s, ms in window.steps)
    figures["shared_mean"] = (window.shared_ms - baseline.shared * window.seconds) / window.checks
    figures["total"] = sum(figures[part] for part in (*OWN_PARTS, "shared_ms"))
    return figures


def report(
    server: Server,
    baselines: list[Window],
    runs: dict[str, list[Window]],
    verdicts: dict[str, dict[str, str]],
    interval_s: float,
) -> None:
    baseline = Baseline.of(baselines)
    print(f"\n{server.name}: {server.image}, GET {server.path} on port {server.port}")
    for number, window in enumerate(baselines, 1):
        steps = [ms / s for s, ms in window.steps]
        print(
            f"  baseline {number} (no check): dockerd+containerd {statistics.median(steps):.2f}"
            f" ms/s median, {window.rate('shared_ms'):.2f} mean, {max(steps):.0f} at most;"
            f" container {window.rate('check_ms') + window.rate('server_ms'):.2f} ms/s"
        )
    print(f"  dockerd+containerd idle, taken off: {baseline.shared:.2f} ms/s")
    if max(statistics.median(ms / s for s, ms in w.steps) for w in baselines) > BUSY_ENGINE:
        print(
            "  !! the engine was busy with other containers during a baseline: the d+c column"
            " moves with that work; the other columns are this container's alone"
        )
    print(
        f"  {'check':<24} {'checks':>6} {'period':>6} {'wall':>5} {'check':>6} {'server':>6}"
        f" {'shim':>6} {'d+c':>6} {'total':>6} {'(d+c':>6} {'x cur':>6}"
        f" {'%core':>6} {'%core':>6} {'1% at':>6}"
    )
    print(
        f"  {'':<24} {'':>6} {'s':>6} {'ms':>5} {'ms':>6} {'ms':>6} {'+runc':>6} {'ms':>6}"
        f" {'ms':>6} {'mean)':>6} {'':>6} {'@1s':>6} {'@2s':>6}"
    )
    figures = {
        name: {
            key: statistics.median(per_check(w, baseline)[key] for w in windows)
            for key in (*OWN_PARTS, "shared_ms", "shared_mean", "total")
        }
        for name, windows in runs.items()
    }
    current = next((f["total"] for n, f in figures.items() if "current" in n), None)
    for name, windows in runs.items():
        f = figures[name]
        failed = sum(w.failed for w in windows)
        ratio = f"{f['total'] / current:6.2f}" if current else f"{'':>6}"
        print(
            f"  {name:<24} {sum(w.checks for w in windows):>6}"
            f" {statistics.median(w.period_s for w in windows):>6.2f}"
            f" {statistics.median(w.wall_ms for w in windows):>5.0f}"
            f" {f['check_ms']:>6.1f} {f['server_ms']:>6.1f} {f['shim_ms']:>6.1f}"
            f" {f['shared_ms']:>6.1f} {f['total']:>6.1f} {f['shared_mean']:>6.1f} {ratio}"
            f" {f['total'] / 10:>5.1f}% {f['total'] / 20:>5.1f}% {_within(f['total']):>6}"
        )
        statuses = {w.status for w in windows}
        if failed or statuses != {"healthy"}:
            print(f"  {'':<24} !! {failed} failed checks, status {', '.join(sorted(statuses))}")
    print(
        f"  ms of CPU per check, checked every {interval_s:g} s; shim+runc: the container's"
        " containerd-shim and runc, not the check process; d+c: dockerd and containerd,"
        " median over checks, (window mean) beside the total; x cur: total against the"
        " service's current check"
    )
    print("  does the check fail when the server is down? (docker exec, once each)")
    print(f"  {'check':<24} {'refused':>14} {'503':>14} {'hung':>14}")
    for name, kinds in verdicts.items():
        print(f"  {name:<24} {kinds['refused']:>14} {kinds['503']:>14} {kinds['hung']:>14}")


def _within(total_ms: float) -> str:
    """The shortest interval at which the check stays within 1 % of a core."""
    return next((f"{s} s" for s, ms in TARGET_MS_AT.items() if total_ms <= ms), "no")


def bench(
    client: DockerClient, server: Server, seconds: float, interval_s: float, rounds: int
) -> None:
    print(f"{server.name}: measuring {len(server.candidates)} checks, {rounds} round(s)")
    baselines = [measure(client, server, None, seconds, interval_s)]
    runs: dict[str, list[Window]] = {name: [] for name in server.candidates}
    for round_number in range(rounds):
        names = list(server.candidates)
        for name in names if round_number % 2 == 0 else reversed(names):
            window = measure(client, server, server.candidates[name], seconds, interval_s)
            runs[name].append(window)
            print(f"  {name}: {window.checks} checks, {window.status}")
        baselines.append(measure(client, server, None, seconds, interval_s))
    report(server, baselines, runs, detection(client, server), interval_s)


def interpreter_start_ms() -> float:
    """CPU of this host's `python -I -S -c pass`: how fast this machine is, to compare runs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(10):
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return spent * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="measured window per container")
    parser.add_argument("--interval", type=float, default=1, help="seconds between checks")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every candidate")
    parser.add_argument("--only", default="backend,frontend", help="comma-separated")
    args = parser.parse_args()
    wanted = set(args.only.split(","))

    with tempfile.TemporaryDirectory(prefix="astats-bench-base-") as scratch:
        base = debian_base(SUITE, BASE_TAG, Path(scratch))
    servers = []
    if "backend" in wanted:
        servers.append(python_servers(backend_image(python_standin(base))))
    if "frontend" in wanted:
        servers.append(node_servers(node_standin(base)))
    client = from_env()
    engine = client.version()
    cgroup = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").is_file() else "v1"
    print(
        f"Docker {engine['Version']}, cgroup {cgroup}, {os.cpu_count()} CPUs, "
        f"{len(client.containers.list())} other containers running, "
        f"python -I -S -c pass {interpreter_start_ms():.0f} ms of CPU on the host"
    )
    for server in servers:
        bench(client, server, args.seconds, args.interval, args.rounds)


if __name__ == "__main__":
    main()

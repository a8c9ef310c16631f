"""``astats logs``: the services' output merged in time order; ``-f`` follows across rollouts.

Containers are read with ``docker logs --timestamps``. The backend's LATEST_LOG.txt (the
``latest-log`` source) is read by offset through ``sh`` in a running backend container, where
it lives on the shared logs volume; a rotation (the file got shorter) restarts from its top.
Following watches the engine's ``start`` events for the stack, so a replacement or a restart
of a followed service is picked up and read from its first line.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from docker.client import DockerClient
from docker.errors import DockerException
from docker.models.containers import Container
from requests.exceptions import RequestException
from rich.console import Console
from rich.text import Text

from astats_console.engine import run_in
from astats_console.errors import ConsoleError
from astats_console.logmerge import (
    LineSplitter,
    LogLine,
    Reorder,
    leading_time,
    merge,
    split_engine_line,
    stamp_lines,
)
from astats_console.stack import LOGS_PSEUDO_SERVICE, STACK_LABEL, Stack, service_of

LOG_FILE = "LATEST_LOG.txt"
DEFAULT_LOG_DIR = "/app/logs"
HOLD_S = 0.3
FILE_POLL_S = 1.0
COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")
# Size first, then exactly that many bytes from the offset: lines written meanwhile wait for
# the next poll instead of being read twice. A shorter file was rotated: read from the top.
_READ_FROM = r"""f=$1; off=$2; tail_n=$3
size=$(wc -c < "$f") || exit 3
[ "$size" -lt "$off" ] && off=0
echo "$size"
if [ -n "$tail_n" ]; then head -c "$size" "$f" | tail -n "$tail_n"
else tail -c +$((off + 1)) "$f" | head -c $((size - off)); fi
"""


@dataclass(frozen=True)
class LogOptions:
    services: list[str]
    follow: bool
    since: datetime | None
    tail: int | None
    grep: re.Pattern[str] | None
    timestamps: bool


def log_dir(container: Container) -> str:
    for entry in (container.attrs.get("Config") or {}).get("Env") or []:
        name, _, value = str(entry).partition("=")
        if name == "LOG_DIR" and value:
            return value
    return DEFAULT_LOG_DIR


def container_lines(
    container: Container, service: str, since: datetime | None, tail: int | None
) -> list[LogLine]:
    raw = container.logs(
        timestamps=True,
        since=since.timestamp() if since else None,
        tail=tail if tail is not None else "all",
    )
    texts = [split_engine_line(line) for line in raw.decode("utf-8", "replace").splitlines()]
    return stamp_lines(texts, service)


class LatestLog:
    """LATEST_LOG.txt on the backend's logs volume, read through whichever backend runs."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.offset = 0
        self.last_at: datetime | None = None
        self.splitter = LineSplitter()

    def read(self, tail: int | None = None, *, final: bool = False) -> list[LogLine]:
        """New lines since the last read; ``final`` includes an unfinished last line."""
        backends = self.stack.containers("backend", running=True)
        if not backends:
            return []
        container = backends[-1]
        path = f"{log_dir(container)}/{LOG_FILE}"
        args = [path, str(self.offset), "" if tail is None else str(tail)]
        result = run_in(container, ["sh", "-c", _READ_FROM, "sh", *args])
        if result.exit_code == 3:
            return []
        if not result.ok:
            raise ConsoleError(f"reading {path} in {container.name} failed: {result.error_text()}")
        size_text, _, body = result.stdout.partition("\n")
        if int(size_text or "0") < self.offset:
            self.splitter = LineSplitter()
        self.offset = int(size_text or "0")
        texts = [(leading_time(t), t) for t in self.splitter.feed(body.encode())]
        if final:
            texts += [(leading_time(t), t) for t in self.splitter.rest()]
        lines = stamp_lines(texts, LOGS_PSEUDO_SERVICE, self.last_at or datetime.now().astimezone())
        if lines:
            self.last_at = lines[-1].at
        return lines


class Printer:
    def __init__(self, console: Console, services: list[str], options: LogOptions) -> None:
        self.console = console
        self.options = options
        self.width = max(len(s) for s in services)
        self.colours = {s: COLOURS[i % len(COLOURS)] for i, s in enumerate(services)}

    def wanted(self, line: LogLine) -> bool:
        if self.options.since is not None and line.at < self.options.since:
            return False
        return self.options.grep is None or self.options.grep.search(line.text) is not None

    def emit(self, line: LogLine) -> None:
        if not self.wanted(line):
            return
        text = Text(f"{line.source:<{self.width}} | ", style=self.colours.get(line.source, ""))
        if self.options.timestamps:
            text.append(line.at.isoformat(timespec="milliseconds") + " ", style="dim")
        text.append(line.text)
        self.console.print(text)


def show_logs(stack: Stack, options: LogOptions, console: Console, err: Console) -> int:
    stack.check_services(options.services, extra=(LOGS_PSEUDO_SERVICE,))
    services = options.services or [s for s in stack.services() if s != "migration"]
    printer = Printer(console, services, options)
    batches = []
    # Following goes on from the last line shown for each container, so none is lost between.
    shown: dict[str, datetime] = {}
    for service in services:
        if service == LOGS_PSEUDO_SERVICE:
            continue
        for container in stack.containers(service):
            lines = container_lines(container, service, options.since, options.tail)
            batches.append(lines)
            if lines:
                shown[container.id or ""] = lines[-1].at
            elif options.since is not None:
                shown[container.id or ""] = options.since
    latest = LatestLog(stack) if LOGS_PSEUDO_SERVICE in services else None
    if latest is not None:
        batches.append(latest.read(tail=options.tail, final=not options.follow))
    for line in merge(batches):
        printer.emit(line)
    if options.follow:
        follow(stack, services, shown, printer, err, latest)
    return 0


class Follower:
    """One thread per followed container; the engine's start events add the new ones."""

    def __init__(self, stack: Stack, services: list[str], out: queue.Queue[LogLine | str]) -> None:
        self.stack = stack
        self.services = services
        self.out = out
        self.lock = threading.Lock()
        self.active: set[str] = set()
        self.seen: dict[str, set[str]] = {s: set() for s in services}
        self.last_at: dict[str, datetime] = {}
        self.stopping = threading.Event()

    def start(self, container: Container, *, fresh: bool) -> None:
        """``fresh``: read the container from its first line (it started while we follow)."""
        service = service_of(container)
        cid = container.id or ""
        with self.lock:
            if cid in self.active or service not in self.seen or self.stopping.is_set():
                return
            self.active.add(cid)
            others = self.seen[service] - {cid}
            self.seen[service].add(cid)
        if others and cid not in self.last_at:
            self.out.put(f"{service}: following {container.name} ({cid[:12]}) as well")
        since = self.last_at.get(cid)
        threading.Thread(
            target=self._read, args=(container, service, since, fresh), daemon=True
        ).start()

    def _read(
        self, container: Container, service: str, since: datetime | None, fresh: bool
    ) -> None:
        cid = container.id or ""
        splitter = LineSplitter()
        try:
            stream = container.logs(
                stream=True,
                follow=True,
                timestamps=True,
                since=since.timestamp() if since else None,
                tail="all" if fresh or since is not None else 0,
            )
            for chunk in stream:
                for raw in splitter.feed(chunk):
                    moment, text = split_engine_line(raw)
                    if moment is None or (since is not None and moment <= since):
                        continue
                    self.last_at[cid] = moment
                    self.out.put(LogLine(moment, service, text))
                if self.stopping.is_set():
                    return
        except (DockerException, RequestException, OSError):
            # The engine closes a quiet stream after the client's read timeout; go on below.
            pass
        finally:
            with self.lock:
                self.active.discard(cid)
        self._resume_if_restarted(container)

    def _resume_if_restarted(self, container: Container) -> None:
        # A restart may come before the start event is read: check once ourselves.
        try:
            container.reload()
        except DockerException:
            return
        if container.status == "running":
            self.start(container, fresh=False)

    def watch_starts(self, client: DockerClient) -> None:
        stream = client.events(
            decode=True,
            filters={
                "type": "container",
                "event": "start",
                "label": f"{STACK_LABEL}={self.stack.name}",
            },
        )
        for event in stream:
            if self.stopping.is_set():
                return
            try:
                container = client.containers.get(str(event.get("id")))
            except DockerException:
                continue
            self.start(container, fresh=container.id not in self.last_at)


def follow(
    stack: Stack,
    services: list[str],
    shown: dict[str, datetime],
    printer: Printer,
    err: Console,
    latest: LatestLog | None,
) -> None:
    out: queue.Queue[LogLine | str] = queue.Queue()
    follower = Follower(stack, [s for s in services if s != LOGS_PSEUDO_SERVICE], out)
    follower.last_at.update(shown)
    threading.Thread(target=follower.watch_starts, args=(stack.client,), daemon=True).start()
    for service in follower.services:
        for container in stack.containers(service, running=True):
            follower.start(container, fresh=False)
    if latest is not None:
        threading.Thread(
            target=_poll_file, args=(latest, out, follower.stopping), daemon=True
        ).start()
    reorder = Reorder(HOLD_S)
    try:
        while True:
            try:
                item = out.get(timeout=0.1)
            except queue.Empty:
                item = None
            if isinstance(item, str):
                err.print(Text(item, style="dim italic"))
            elif item is not None:
                reorder.push(item, time.monotonic())
            for line in reorder.ready(time.monotonic()):
                printer.emit(line)
    except KeyboardInterrupt:
        follower.stopping.set()
        for line in reorder.drain():
            printer.emit(line)


def _poll_file(latest: LatestLog, out: queue.Queue[LogLine | str], stop: threading.Event) -> None:
    put: Callable[[LogLine | str], None] = out.put
    while not stop.wait(FILE_POLL_S):
        try:
            for line in latest.read():
                put(line)
        except (ConsoleError, DockerException) as exc:
            put(f"{LOGS_PSEUDO_SERVICE}: {exc}")

"""``astats restore``: the safe sequence, each step printed with its time.

1. choose the backup and check its checksum (a bad one stops here, nothing touched);
2. confirm (on a TTY, or ``--yes``);
3. stop the writers (the running backend containers);
4. restore through the scheduler (``astats_ops restore``: loaded into a staging copy,
   swapped in only when complete, so all or nothing);
5. start the writers again and wait until they are healthy.

A failed restore leaves the writers stopped, because the database may not be what they expect,
and says what to do next.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from docker.errors import DockerException
from docker.models.containers import Container
from rich.console import Console

from astats_console.backups import BACKUPS_DIR, BackupEntry, list_backups, run_ops, scheduler
from astats_console.errors import ConsoleError, one_line
from astats_console.stack import Stack

WRITERS = ("backend",)
STOP_GRACE_S = 30
HEALTH_MARGIN_S = 30
NANOS = 1_000_000_000


@dataclass(frozen=True)
class RestoreRequest:
    file: str | None
    latest: bool
    yes: bool


def choose(entries: list[BackupEntry], request: RestoreRequest) -> BackupEntry:
    """The requested backup, which must be verified; pure, so its refusals are testable."""
    if request.latest:
        verified = [e for e in entries if e.verification == "ok"]
        if not verified:
            raise ConsoleError(f"no verified backup in {BACKUPS_DIR}; nothing was changed")
        return verified[-1]
    if not request.file:
        raise ConsoleError("name a dump file or pass --latest-dump (see: astats backups)")
    name = request.file.rsplit("/", 1)[-1]
    if request.file.startswith("/") and request.file != f"{BACKUPS_DIR}/{name}":
        raise ConsoleError(
            f"{request.file} is not in {BACKUPS_DIR}; restore takes backups from there"
        )
    for entry in entries:
        if entry.name == name:
            if entry.verification != "ok":
                raise ConsoleError(
                    f"refusing to restore {name}: its checksum check says "
                    f"{entry.verification}; nothing was changed, pick another (astats backups)"
                )
            return entry
    raise ConsoleError(f"no backup named {name} in {BACKUPS_DIR} (see: astats backups)")


def health_budget_s(container: Container) -> float:
    """How long the container's healthcheck may take to say healthy (pulumi up waits as long)."""
    check = (container.attrs.get("Config") or {}).get("Healthcheck") or {}
    interval = (check.get("Interval") or 30 * NANOS) / NANOS
    timeout = (check.get("Timeout") or 30 * NANOS) / NANOS
    start = (check.get("StartPeriod") or 0) / NANOS
    return start + (check.get("Retries") or 3) * (interval + timeout) + HEALTH_MARGIN_S


def wait_healthy(container: Container, budget_s: float) -> str:
    deadline = time.monotonic() + budget_s
    status = "unknown"
    while time.monotonic() < deadline:
        container.reload()
        health = (container.attrs.get("State") or {}).get("Health")
        if container.status != "running":
            return str(container.status)
        status = health.get("Status", "unknown") if health else "running"
        if status in ("healthy", "running"):
            return "healthy"
        time.sleep(1.0)
    return status


class Steps:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()

    def say(self, text: str, style: str = "") -> None:
        elapsed = time.monotonic() - self.started
        self.console.print(f"[{elapsed:6.1f}s] {text}", style=style, markup=False, highlight=False)


def ask_on_tty(entry: BackupEntry, stack: str, database: str) -> bool:
    if not sys.stdin.isatty():
        raise ConsoleError(
            "refusing to restore without confirmation: stdin is not a TTY, pass --yes; "
            "nothing was changed"
        )
    sys.stderr.write(
        f"Restore {entry.name} into stack {stack!r}? The database's current contents are "
        f"replaced and the backend is stopped meanwhile. Type {database!r} to confirm: "
    )
    sys.stderr.flush()
    return sys.stdin.readline().strip() == database


def run_restore(
    stack: Stack,
    request: RestoreRequest,
    console: Console,
    confirm: Callable[[BackupEntry, str, str], bool] = ask_on_tty,
) -> int:
    steps = Steps(console)
    job = scheduler(stack)
    database = _database_of(job)
    entry = choose(list_backups(job), request)
    steps.say(f"checksum ok: {entry.path}")
    if not request.yes and not confirm(entry, stack.name, database):
        raise ConsoleError("restore not confirmed; nothing was changed")
    writers = [c for service in WRITERS for c in stack.containers(service, running=True)]
    for writer in writers:
        steps.say(f"stopping {writer.name} (nothing writes during the restore)")
        writer.stop(timeout=STOP_GRACE_S)
    if writers:
        steps.say("writers stopped")
    else:
        steps.say("no backend was running; nothing to stop")
    steps.say(f"restoring {entry.name} into {database} (a staging copy, swapped in when complete)")
    result = run_ops(job, ["restore", "--yes", entry.path])
    if not result.ok:
        steps.say(f"restore failed: {result.error_text()}", style="bold red")
        names = " ".join(w.name or "" for w in writers)
        steps.say(
            "the backend is left stopped; the restore swaps in only a complete copy, so "
            "the database is as it was before. Fix the cause and run astats restore again, "
            f"or bring the backend back as it is: docker start {names}".rstrip(),
            style="bold red",
        )
        return 1
    steps.say(f"restored {entry.name}")
    unhealthy = start_writers(writers, steps)
    if unhealthy:
        steps.say(
            "the data is restored but the backend is not healthy: "
            + "; ".join(unhealthy)
            + " (see astats logs backend)",
            style="bold red",
        )
        return 1
    steps.say("done", style="green")
    return 0


def start_writers(writers: list[Container], steps: Steps) -> list[str]:
    """Start each and wait until it is healthy; what did not come back, one entry each."""
    trouble = []
    for writer in writers:
        steps.say(f"starting {writer.name}")
        try:
            writer.start()
        except DockerException as exc:
            trouble.append(f"{writer.name}: {one_line(str(exc))}")
            continue
        state = wait_healthy(writer, health_budget_s(writer))
        steps.say(f"{writer.name} is {state}")
        if state != "healthy":
            trouble.append(f"{writer.name}: {state}")
    return trouble


def _database_of(job: Container) -> str:
    for entry in (job.attrs.get("Config") or {}).get("Env") or []:
        name, _, value = str(entry).partition("=")
        if name == "PGDATABASE" and value:
            return value
    return "the database"

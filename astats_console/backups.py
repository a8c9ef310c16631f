"""Backups through the scheduler container: ``python3 -m astats_ops`` run where the dumps live.

The paths mirror components/backup.py (BACKUPS_MOUNT, STATUS_FILE); the status file is read
tolerantly, as the scheduler may add fields.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from docker.models.containers import Container

from astats_console.engine import ExecResult, run_in
from astats_console.errors import ConsoleError
from astats_console.facts import BackupFacts
from astats_console.stack import Stack

BACKUP_SERVICE = "backup"
BACKUPS_DIR = "/backups"
STATUS_FILE = f"{BACKUPS_DIR}/.astats-status.json"
# The stack's launcher (components/launcher.py) as a container's entrypoint: its script inline,
# named `launch`, or, in containers made before root file systems were read-only, the file the
# provider uploaded.
INLINE_LAUNCHER = ("/bin/sh", "-c")
LAUNCHER_NAME = "launch"
UPLOADED_LAUNCHER = ["/bin/sh", "/run/astats/launch"]
OPS = ["python3", "-m", "astats_ops"]


def launcher_of(container: Container) -> list[str]:
    """The container's launcher, which exports its secrets and then runs what follows it: its
    entrypoint when that is the stack's launcher, else nothing."""
    entrypoint = list((container.attrs.get("Config") or {}).get("Entrypoint") or [])
    if entrypoint == UPLOADED_LAUNCHER:
        return entrypoint
    inline = len(entrypoint) == 4 and tuple(entrypoint[:2]) == INLINE_LAUNCHER
    return entrypoint if inline and entrypoint[3] == LAUNCHER_NAME else []


@dataclass(frozen=True)
class BackupEntry:
    name: str
    path: str
    created: datetime
    size: int
    verification: str
    drill: str | None


def scheduler(stack: Stack) -> Container:
    return stack.running(BACKUP_SERVICE, role="the backup scheduler")


def run_ops(container: Container, args: list[str]) -> ExecResult:
    """``astats_ops`` with the container's secrets, exported by its launcher as at start."""
    return run_in(container, [*launcher_of(container), *OPS, *args])


def parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_listing(text: str) -> list[BackupEntry]:
    """``astats_ops list --json``, oldest first; entries it cannot read are left out."""
    entries = []
    for row in json.loads(text):
        if not isinstance(row, dict) or "name" not in row:
            continue
        created = parse_time(row.get("created"))
        if created is None:
            continue
        drill = row.get("drill")
        summary = drill.get("summary") if isinstance(drill, dict) else None
        entries.append(
            BackupEntry(
                name=str(row["name"]),
                path=str(row.get("path") or f"{BACKUPS_DIR}/{row['name']}"),
                created=created,
                size=int(row.get("size") or 0),
                verification=str(row.get("verification", "unknown")),
                drill=str(summary) if summary else None,
            )
        )
    return sorted(entries, key=lambda e: (e.created, e.name))


def list_backups(container: Container) -> list[BackupEntry]:
    result = run_in(container, [*OPS, "list", "--json", f"--dest={BACKUPS_DIR}"])
    if not result.ok:
        raise ConsoleError(f"listing the backups failed: {result.error_text()}")
    try:
        return parse_listing(result.stdout)
    except (ValueError, AttributeError) as exc:
        raise ConsoleError(f"astats_ops list --json printed something unexpected: {exc}") from exc


def read_status(container: Container) -> dict[str, Any]:
    result = run_in(container, ["cat", STATUS_FILE])
    if not result.ok:
        return {}
    try:
        status = json.loads(result.stdout)
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


def interval_from_command(args: list[str]) -> float | None:
    for arg in args:
        match = re.fullmatch(r"--interval-minutes=(\d+(?:\.\d+)?)", arg)
        if match:
            return float(match[1])
    return None


def backup_facts_from(
    state: str, status: dict[str, Any], listing: list[BackupEntry], args: list[str]
) -> BackupFacts:
    interval = status.get("interval_minutes")
    newest = listing[-1] if listing else None
    drill = status.get("last_drill")
    return BackupFacts(
        scheduler_state=state,
        interval_minutes=float(interval)
        if isinstance(interval, int | float)
        else interval_from_command(args),
        newest_name=newest.name if newest else None,
        newest_created=newest.created if newest else None,
        newest_verification=newest.verification if newest else None,
        count=len(listing),
        last_result=status.get("last_result")
        if isinstance(status.get("last_result"), str)
        else None,
        last_attempt=parse_time(status.get("last_attempt")),
        last_error=str(status["last_error"]) if status.get("last_error") else None,
        drill=str(drill.get("summary"))
        if isinstance(drill, dict) and drill.get("summary")
        else None,
    )


def backup_facts(stack: Stack) -> BackupFacts | None:
    """None when the stack has no scheduler (``backup.enabled: false``)."""
    containers = stack.containers(BACKUP_SERVICE)
    if not containers:
        return None
    container = containers[-1]
    args = [str(a) for a in container.attrs.get("Args") or []]
    if container.status != "running":
        return BackupFacts(
            scheduler_state=container.status,
            interval_minutes=interval_from_command(args),
            problem=f"the scheduler is not running ({container.status})",
        )
    try:
        listing = list_backups(container)
    except ConsoleError as exc:
        return BackupFacts("running", interval_from_command(args), problem=str(exc))
    return backup_facts_from("running", read_status(container), listing, args)


def take_backup(container: Container, on_progress: Callable[[float, int | None], None]) -> str:
    """Run a backup now and return its path; ``on_progress(seconds, bytes written so far)``."""
    outcome: list[ExecResult] = []
    worker = threading.Thread(
        target=lambda: outcome.append(run_ops(container, ["backup", f"--dest={BACKUPS_DIR}"])),
        daemon=True,
    )
    started = time.monotonic()
    worker.start()
    while worker.is_alive():
        on_progress(time.monotonic() - started, _partial_bytes(container))
        worker.join(timeout=1.0)
    if not outcome:
        raise ConsoleError("the backup command ended without a result")
    result = outcome[0]
    lines = result.stdout.strip().splitlines()
    if not result.ok or not lines:
        raise ConsoleError(f"backup failed, no backup file was kept: {result.error_text()}")
    return lines[0]


def _partial_bytes(container: Container) -> int | None:
    result = run_in(container, ["sh", "-c", f"stat -c %s {BACKUPS_DIR}/.*.partial 2>/dev/null"])
    sizes = [int(word) for word in result.stdout.split() if word.isdigit()]
    return sum(sizes) if sizes else None

"""Backups through the scheduler container: ``python3 -m astats_ops`` run where the dumps live.

The paths mirror components/backup.py (BACKUPS_MOUNT, STATUS_FILE); the status file is read
tolerantly, as the scheduler may add fields. Its ``pitr`` block (WAL archiving and pgBackRest's
physical backups, when ``backup.pitr`` is on) is read here too; archiving.py judges and tells it.
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
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from astats_console.archiving import drill_text, physical_table
from astats_console.durations import format_bytes, format_duration
from astats_console.engine import ExecResult, run_in
from astats_console.errors import ConsoleError
from astats_console.facts import (
    ArchiveFacts,
    BackupFacts,
    PhysicalBackup,
    PhysicalDrill,
    PhysicalRun,
    PitrFacts,
)
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
# backup.pitr.archiveTimeoutS's default (components/config.py), for a block that lacks it.
DEFAULT_ARCHIVE_TIMEOUT_S = 60.0


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


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _record(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def physical_backup_from(row: object) -> PhysicalBackup | None:
    """One backup of the block; None without a label."""
    record = _record(row)
    label = _text(record.get("label"))
    if label is None:
        return None
    return PhysicalBackup(
        label=label,
        type=str(record.get("type") or "?"),
        started_at=parse_time(record.get("started_at")),
        stopped_at=parse_time(record.get("stopped_at")),
        size_bytes=_count(record.get("size_bytes")),
        repo_bytes=_count(record.get("repo_bytes")),
    )


def _physical_backups(block: dict[str, Any]) -> tuple[PhysicalBackup, ...]:
    """Every backup the block lists (``backups`` as a list), else its newest; oldest first."""
    listed = block.get("backups")
    rows = listed if isinstance(listed, list) else []
    found = {b.label: b for b in map(physical_backup_from, rows) if b is not None}
    newest = physical_backup_from(block.get("newest_backup"))
    if newest is not None:
        found.setdefault(newest.label, newest)
    unknown = datetime.min.replace(tzinfo=UTC)
    return tuple(
        sorted(found.values(), key=lambda b: (b.started_at or b.stopped_at or unknown, b.label))
    )


def _physical_drill(value: object) -> PhysicalDrill | None:
    record = _record(value)
    if not record:
        return None
    return PhysicalDrill(
        backup=_text(record.get("backup")),
        recovered_to=parse_time(record.get("recovered_to")),
        ok=record.get("ok") is True,
        finished_at=parse_time(record.get("finished_at")),
        restore_seconds=_seconds(record.get("restore_seconds")),
        summary=_text(record.get("summary")),
        error=_text(record.get("error")),
    )


def _physical_run(value: object) -> PhysicalRun | None:
    record = _record(value)
    if not record:
        return None
    return PhysicalRun(
        type=str(record.get("type") or "?"),
        ok=record.get("ok") is True,
        finished_at=parse_time(record.get("finished_at")),
        seconds=_seconds(record.get("seconds")),
        error=_text(record.get("error")),
    )


def pitr_facts_from(block: object) -> PitrFacts | None:
    """The status file's ``pitr`` block; None when there is none (the stack archives nothing)."""
    if not isinstance(block, dict):
        return None
    archive = _record(block.get("archive"))
    backups = _physical_backups(block)
    timeout = _seconds(block.get("archive_timeout_s"))
    oldest = parse_time(block.get("oldest_backup_at"))
    if oldest is None and backups:
        oldest = min((b.started_at for b in backups if b.started_at), default=None)
    return PitrFacts(
        checked_at=parse_time(block.get("checked_at")),
        archive_timeout_s=timeout if timeout and timeout > 0 else DEFAULT_ARCHIVE_TIMEOUT_S,
        archive=ArchiveFacts(
            last_archived_wal=_text(archive.get("last_archived_wal")),
            last_archived_at=parse_time(archive.get("last_archived_at")),
            last_failed_wal=_text(archive.get("last_failed_wal")),
            last_failed_at=parse_time(archive.get("last_failed_at")),
            pending_segments=_count(archive.get("pending_segments")) or 0,
            oldest_pending_age_s=_seconds(archive.get("oldest_pending_age_s")),
            pg_wal_bytes=_count(archive.get("pg_wal_bytes")),
            repo_free_bytes=_count(archive.get("repo_free_bytes")),
            failing=archive.get("failing") is True,
            lagging=archive.get("lagging") is True,
            reason=_text(archive.get("reason")),
        ),
        backups=backups,
        backup_count=_count(block.get("backups")) or len(backups),
        oldest_backup_at=oldest,
        repo_bytes=_count(block.get("repo_bytes")),
        last_backup_run=_physical_run(block.get("last_backup_run")),
        last_drill=_physical_drill(block.get("last_drill")),
    )


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
        pitr=pitr_facts_from(status.get("pitr")),
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


def listing_json(
    entries: list[BackupEntry], pitr: PitrFacts | None, now: datetime
) -> dict[str, Any]:
    """``backups --json``: the dumps, and the ``pitr`` block (null without archiving)."""
    return {
        "dumps": [
            {
                "name": e.name,
                "path": e.path,
                "created": e.created.isoformat(),
                "size": e.size,
                "verification": e.verification,
                "drill": e.drill,
            }
            for e in entries
        ],
        "pitr": None if pitr is None else pitr.to_json(now),
    }


def listing_view(
    stack: str, entries: list[BackupEntry], pitr: PitrFacts | None, now: datetime
) -> Group:
    """``backups``: the dumps newest first, then the physical backups and their last drill."""
    shown: list[RenderableType] = []
    if entries:
        table = Table(title=f"backups of stack {stack} ({BACKUPS_DIR})")
        for column in ("NAME", "SIZE", "AGE", "VERIFICATION", "DRILL"):
            table.add_column(column)
        for e in reversed(entries):
            verification = Text(e.verification, style="" if e.verification == "ok" else "red")
            table.add_row(
                e.name,
                format_bytes(e.size),
                format_duration(now - e.created),
                verification,
                e.drill or "-",
            )
        shown.append(table)
    else:
        shown.append(Text(f"no backups in {BACKUPS_DIR} of stack {stack!r}"))
    if pitr is not None:
        if pitr.backups:
            shown.append(physical_table(pitr, now))
        else:
            shown.append(Text("no physical backups yet (pgBackRest)"))
        shown.append(Text(f"last physical drill: {drill_text(pitr.last_drill, now)}"))
    return Group(*shown)


def show_backups(stack: Stack, out: Console, *, as_json: bool) -> int:
    container = scheduler(stack)
    entries = list_backups(container)
    pitr = pitr_facts_from(read_status(container).get("pitr"))
    now = datetime.now(UTC)
    if as_json:
        out.print_json(json.dumps(listing_json(entries, pitr, now)))
    else:
        out.print(listing_view(stack.name, entries, pitr, now))
    return 0


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

"""Point-in-time recovery: the stanza, the physical backups' cadence, and the WAL archive's health.

The database server pushes every WAL segment to the pgBackRest repository itself
(``archive_command``, docker/postgres/archive-push.sh); the scheduler takes the physical backups
(a full every ``full_every_hours``, a differential every ``diff_every_hours`` in between; pgBackRest
expires what ``repo1-retention-full`` no longer keeps after each backup) and watches the archive:

* ``pg_stat_archiver`` (over SQL): the last archived and the last failed segment;
* ``pg_wal/archive_status/*.ready`` in the data directory (mounted read-only at
  ``PGBACKREST_PG1_PATH``): the segments waiting, and how long the oldest has waited;
* the async archiver's spool (``<spool>/archive/<stanza>/out/*.error``), where pgBackRest leaves the
  error of the push that failed, in its own words;
* the free space of the repository's volume.

Archiving is *failing* when its last failure is newer than its last success, and *lagging* when
the oldest waiting segment is older than two ``archive_timeout``s.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from astats_ops.errors import OpsError, one_line
from astats_ops.pgbackrest import StanzaInfo, isoformat, read_info, run_pgbackrest
from astats_ops.pgenv import PgTarget, connection_hint, find_tool
from astats_ops.snapshot import psql_session

DEFAULT_SPOOL = "/var/spool/pgbackrest"
DEFAULT_REPO1 = "/var/lib/pgbackrest"
SPOOL_RETRIES = 8
SPOOL_RETRY_S = 0.25
ARCHIVER_SQL = """SELECT json_build_object(
    'last_archived_wal', last_archived_wal, 'last_archived_at', last_archived_time,
    'last_failed_wal', last_failed_wal, 'last_failed_at', last_failed_time,
    'archive_timeout_s', (SELECT setting::float FROM pg_settings WHERE name = 'archive_timeout'),
    'max_wal_bytes', (SELECT setting::bigint * 1048576 FROM pg_settings
        WHERE name = 'max_wal_size' AND unit = 'MB'))
FROM pg_stat_archiver;"""


@dataclass(frozen=True)
class PitrSettings:
    archive_timeout_s: float = 60
    full_every_hours: float = 168
    diff_every_hours: float = 24
    drill_every_hours: float = 24


def ensure_stanza(env: Mapping[str, str]) -> str:
    """``stanza-create``: idempotent, and a no-op when the first WAL push already made it."""
    run_pgbackrest(["stanza-create"], env)
    return "stanza ok"


def due_backup(info: StanzaInfo, now: datetime, settings: PitrSettings) -> tuple[str | None, str]:
    """``("full" | "diff" | None, why)``: a full when there is none or the newest is
    ``full_every_hours`` old, else a diff when the newest backup is ``diff_every_hours`` old."""
    full = info.newest_of("full")
    if full is None:
        return "full", "no full backup yet"
    full_age = now - full.started_at
    if full_age >= timedelta(hours=settings.full_every_hours):
        return "full", f"newest full {full.label} is {_hours(full_age)} old"
    newest = info.newest
    assert newest is not None
    age = now - newest.started_at
    if age >= timedelta(hours=settings.diff_every_hours):
        return "diff", f"newest backup {newest.label} is {_hours(age)} old"
    return None, f"not due: newest backup {newest.label} is {_hours(age)} old"


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


@dataclass(frozen=True)
class BackupRun:
    type: str
    ok: bool
    finished_at: str
    seconds: float
    error: str | None


def take_backup(kind: str, env: Mapping[str, str]) -> BackupRun:
    """``pgbackrest backup --type=<kind>``; a failure is returned, not raised."""
    started = time.monotonic()
    error = None
    try:
        run_pgbackrest(["backup", f"--type={kind}"], env)
    except OpsError as exc:
        error = str(exc)
    seconds = round(time.monotonic() - started, 1)
    return BackupRun(kind, error is None, isoformat(datetime.now(UTC)), seconds, error)


@dataclass(frozen=True)
class ArchiveStatus:
    last_archived_wal: str | None = None
    last_archived_at: str | None = None
    last_failed_wal: str | None = None
    last_failed_at: str | None = None
    pending_segments: int = 0
    pending_bytes: int = 0
    oldest_pending_age_s: float | None = None
    pg_wal_bytes: int = 0
    max_wal_bytes: int | None = None
    repo_free_bytes: int | None = None
    failing: bool = False
    lagging: bool = False
    reason: str | None = None

    def as_status(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Problem:
    """An alert line; ``kind`` is what the scheduler compares to alert once per new problem."""

    kind: str
    text: str


@dataclass
class _Archiver:
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def server_archive_timeout(env: Mapping[str, str]) -> float | None:
    """The server's own ``archive_timeout`` (seconds), or None when it cannot be read."""
    value = _archiver(env).fields.get("archive_timeout_s")
    return float(value) if value else None


def _archiver(env: Mapping[str, str]) -> _Archiver:
    try:
        psql = find_tool("psql", env)
    except OpsError as exc:
        return _Archiver(error=str(exc))
    with psql_session(psql, env, PgTarget.from_env(env).database) as session:
        line = session.request(ARCHIVER_SQL)
        if line is None:
            text = session.error_text()
            return _Archiver(
                error=f"reading pg_stat_archiver failed: {text}; {connection_hint(text)}"
            )
    fields: dict[str, Any] = json.loads(line)
    return _Archiver(fields)


def archive_status(
    env: Mapping[str, str],
    archive_timeout_s: float,
    now: datetime | None = None,
    *,
    earlier_reason: str | None = None,
) -> ArchiveStatus:
    """The archive's health; what cannot be read is said in ``reason``, nothing raises.

    ``earlier_reason`` is what the last check said while archiving was failing: pgBackRest
    clears its error file each time it retries a push, so a check that falls between two
    attempts keeps that reason rather than losing pgBackRest's words."""
    now = now or datetime.now(UTC)
    archiver = _archiver(env)
    found = archiver.fields
    notes = [archiver.error] if archiver.error else []
    pending = _pending(Path(env.get("PGBACKREST_PG1_PATH", "")), now, notes)
    archived_at, failed_at = found.get("last_archived_at"), found.get("last_failed_at")
    failing = failed_at is not None and (
        archived_at is None
        or datetime.fromisoformat(failed_at) > datetime.fromisoformat(archived_at)
    )
    oldest = pending.oldest_age_s
    lagging = oldest is not None and oldest > 2 * archive_timeout_s
    # A spool error from an earlier push that a later one cleared up stays out of sight while
    # archiving works, so a stale message never reads as a present problem.
    reason = spool_error(env) if failing or lagging else None
    # A push being retried has removed its error file and not yet written the next one.
    retries = SPOOL_RETRIES if failing else 0
    while reason is None and retries:
        time.sleep(SPOOL_RETRY_S)
        reason, retries = spool_error(env), retries - 1
    if reason is None and failing and earlier_reason:
        reason = earlier_reason
    if reason is None and failing:
        reason = (
            f"archive_command failed for {found.get('last_failed_wal')} and left no error in "
            "the spool; see the database server's log"
        )
    if reason is None and notes:
        reason = "; ".join(notes)
    return ArchiveStatus(
        last_archived_wal=found.get("last_archived_wal"),
        last_archived_at=_iso(archived_at),
        last_failed_wal=found.get("last_failed_wal"),
        last_failed_at=_iso(failed_at),
        pending_segments=pending.segments,
        pending_bytes=pending.bytes,
        oldest_pending_age_s=None if oldest is None else round(oldest, 1),
        pg_wal_bytes=pending.pg_wal_bytes,
        max_wal_bytes=found.get("max_wal_bytes"),
        repo_free_bytes=repo_free_bytes(env),
        failing=failing,
        lagging=lagging,
        reason=reason,
    )


def _iso(text: str | None) -> str | None:
    return None if text is None else isoformat(datetime.fromisoformat(text))


@dataclass(frozen=True)
class _Pending:
    segments: int = 0
    bytes: int = 0
    oldest_age_s: float | None = None
    pg_wal_bytes: int = 0


def _pending(pgdata: Path, now: datetime, notes: list[str]) -> _Pending:
    """The segments PostgreSQL marked ready for the archive, and the size of pg_wal."""
    if not str(pgdata):
        notes.append("PGBACKREST_PG1_PATH is not set; cannot look into pg_wal")
        return _Pending()
    wal = pgdata / "pg_wal"
    try:
        pg_wal_bytes = sum(
            entry.stat().st_size
            for entry in os.scandir(wal)
            if entry.is_file(follow_symlinks=False)
        )
        segments, size, oldest = 0, 0, None
        for entry in os.scandir(wal / "archive_status"):
            if not entry.name.endswith(".ready"):
                continue
            with contextlib.suppress(FileNotFoundError):
                mtime = entry.stat().st_mtime
                segments += 1
                oldest = mtime if oldest is None else min(oldest, mtime)
                size += (wal / entry.name.removesuffix(".ready")).stat().st_size
    except OSError as exc:
        notes.append(f"cannot read {wal}: {exc.strerror or exc}")
        return _Pending()
    age = None if oldest is None else max(0.0, now.timestamp() - oldest)
    return _Pending(segments, size, age, pg_wal_bytes)


def spool_error(env: Mapping[str, str]) -> str | None:
    """The newest error the async archiver left in its spool, as ``ERROR: [NNN]: message``."""
    spool = Path(env.get("PGBACKREST_SPOOL_PATH") or DEFAULT_SPOOL)
    out = spool / "archive" / env.get("PGBACKREST_STANZA", "") / "out"
    newest: tuple[float, Path] | None = None
    try:
        for entry in os.scandir(out):
            if entry.name.endswith(".error"):
                with contextlib.suppress(FileNotFoundError):
                    mtime = entry.stat().st_mtime
                    if newest is None or mtime > newest[0]:
                        newest = (mtime, Path(entry.path))
        if newest is None:
            return None
        text = newest[1].read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    code, _, message = text.partition("\n")
    if code.strip().isdigit():
        return f"ERROR: [{int(code):03d}]: {_reason(message)}"
    return _reason(text) or None


def _reason(text: str) -> str:
    """pgBackRest's words on one line, without its HINT lines (advice on its own setup)."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("HINT:")]
    return one_line("\n".join(lines)).replace(":; ", ": ")


def repo_free_bytes(env: Mapping[str, str]) -> int | None:
    """Free space on repo1's volume (for the unprivileged user), None when it cannot be read."""
    try:
        stat = os.statvfs(env.get("PGBACKREST_REPO1_PATH") or DEFAULT_REPO1)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def repo_bytes(env: Mapping[str, str]) -> int:
    """What repo1 holds on disk: backups and archived WAL."""
    total = 0
    for root, _dirs, files in os.walk(env.get("PGBACKREST_REPO1_PATH") or DEFAULT_REPO1):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def archive_problems(status: ArchiveStatus, archive_timeout_s: float) -> list[Problem]:
    problems = []
    if status.failing:
        problems.append(Problem("archive-failing", f"archiving failing: {status.reason}"))
    if status.lagging and status.oldest_pending_age_s is not None:
        problems.append(
            Problem(
                "archive-lagging",
                f"archiving lags: oldest WAL waiting {status.oldest_pending_age_s:.0f} s "
                f"(archive_timeout {archive_timeout_s:g} s)",
            )
        )
    if status.max_wal_bytes and status.pending_bytes >= status.max_wal_bytes:
        problems.append(
            Problem(
                "pg-wal-full",
                f"pg_wal holds {human_bytes(status.pending_bytes)} waiting for the archive "
                f"({status.pending_segments} segments, more than max_wal_size "
                f"{human_bytes(status.max_wal_bytes)}; "
                f"pg_wal is {human_bytes(status.pg_wal_bytes)})",
            )
        )
    return problems


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def backups_block(env: Mapping[str, str]) -> dict[str, Any]:
    """The status fields ``pgbackrest info`` answers; its failure is said in ``error``."""
    try:
        info = read_info(env)
    except OpsError as exc:
        return {"error": str(exc)}
    newest, earliest = info.newest, info.earliest_target
    error = None
    if info.status_code not in (0, 2):
        # 2 is "no valid backups", which `newest_backup: null` already says.
        error = f"pgbackrest info: stanza {info.name}: {info.status_message}"
    return {
        "newest_backup": None if newest is None else newest.as_status(),
        "oldest_backup_at": None if earliest is None else isoformat(earliest),
        "backups": len(info.backups),
        "repo_bytes": repo_bytes(env),
        "error": error,
    }


def empty_block(archive_timeout_s: float) -> dict[str, Any]:
    return {
        "checked_at": None,
        "archive_timeout_s": archive_timeout_s,
        "archive": None,
        "newest_backup": None,
        "oldest_backup_at": None,
        "backups": 0,
        "repo_bytes": 0,
        "last_backup_run": None,
        "last_drill": None,
        "error": None,
    }


def refresh_archive(block: dict[str, Any], env: Mapping[str, str]) -> ArchiveStatus:
    """Update ``block``'s archive and ``checked_at`` in place."""
    earlier = block.get("archive") or {}
    status = archive_status(
        env,
        float(block["archive_timeout_s"]),
        earlier_reason=earlier.get("reason") if earlier.get("failing") else None,
    )
    block.update(checked_at=isoformat(datetime.now(UTC)), archive=status.as_status())
    return status


def refresh(block: dict[str, Any], env: Mapping[str, str]) -> ArchiveStatus:
    """Update the whole block in place: the backups from ``info``, then the archive."""
    block.update(backups_block(env))
    return refresh_archive(block, env)

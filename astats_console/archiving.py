"""Continuous WAL archiving and pgBackRest's physical backups (``backup.pitr``): what needs an
operator's attention, and how ``status``, ``backups`` and ``watch`` tell it.

Everything comes from the ``pitr`` block the scheduler keeps in its status file (read in
backups.py); a stack without archiving has no block and nothing here applies. The limits:

- lagging: a finished segment waiting longer than twice ``archive_timeout``. The server finishes
  a segment at least that often and the archiver takes it within seconds, so one left waiting
  for two timeouts means the archive falls behind.
- pg_wal: more than 64 segments (1 GiB of 16 MiB segments) waiting, or pg_wal above 2 GiB, twice
  PostgreSQL's default ``max_wal_size`` that checkpoints hold it near. Beyond that the WAL is
  kept for the archive alone, and it grows until the archive catches up or the disk is full,
  which stops the database.
- stale: the block refreshed longer ago than three ``archive_timeout``s and a minute. The
  scheduler refreshes it every ``archive_timeout``: it has missed at least two, it is stuck or
  gone, and the rest of the block describes the past.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.table import Table

from astats_console.durations import format_bytes, format_duration
from astats_console.facts import BackupFacts, PhysicalBackup, PhysicalDrill, PitrFacts

PENDING_SEGMENTS_LIMIT = 64
PG_WAL_LIMIT_BYTES = 2 * 1024**3
STALE_TIMEOUTS = 3
STALE_GRACE = timedelta(seconds=60)


def stale_after(pitr: PitrFacts) -> timedelta:
    return STALE_TIMEOUTS * timedelta(seconds=pitr.archive_timeout_s) + STALE_GRACE


def _ago(moment: datetime | None, now: datetime) -> str:
    return f"{format_duration(now - moment)} ago" if moment else "never"


def _moment(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _segments(count: int) -> str:
    return f"{count} segment{'s' if count != 1 else ''}"


def _archive_problems(pitr: PitrFacts, now: datetime) -> list[tuple[str, str]]:
    archive = pitr.archive
    problems = []
    lag_limit = 2 * pitr.archive_timeout_s
    waited = archive.oldest_pending_age_s
    if archive.failing:
        archived = (
            f"last segment archived {_ago(archive.last_archived_at, now)}"
            if archive.last_archived_at
            else "no segment archived yet"
        )
        waiting = (
            f", {_segments(archive.pending_segments)} waiting" if archive.pending_segments else ""
        )
        reason = archive.reason or "pgBackRest gave no reason"
        problems.append(("failing", f"WAL archiving failing: {reason} ({archived}{waiting})"))
    elif archive.lagging or (waited is not None and waited > lag_limit):
        age = format_duration(timedelta(seconds=waited or 0))
        limit = format_duration(timedelta(seconds=lag_limit))
        text = (
            f"WAL archiving lags: the oldest segment has waited {age}, more than twice "
            f"archive_timeout ({limit})"
        )
        problems.append(("lagging", text))
    big = archive.pg_wal_bytes is not None and archive.pg_wal_bytes > PG_WAL_LIMIT_BYTES
    if big or archive.pending_segments > PENDING_SEGMENTS_LIMIT:
        size = format_bytes(archive.pg_wal_bytes) if archive.pg_wal_bytes is not None else "?"
        text = (
            f"pg_wal holds {size}, {_segments(archive.pending_segments)} waiting for the archive "
            f"(limits {PENDING_SEGMENTS_LIMIT} segments, {format_bytes(PG_WAL_LIMIT_BYTES)}): "
            "it grows until archiving catches up or the disk is full"
        )
        problems.append(("pg_wal", text))
    return problems


def pitr_problems(pitr: PitrFacts | None, now: datetime) -> list[tuple[str, str]]:
    """(key, text): the key stays the same while the problem lasts (a watch reports it once);
    each failed backup run and drill has its own."""
    if pitr is None:
        return []
    problems = _archive_problems(pitr, now)
    limit = stale_after(pitr)
    if pitr.checked_at is None or now - pitr.checked_at > limit:
        checked = _ago(pitr.checked_at, now)
        text = (
            f"WAL archiving status not refreshed: checked {checked}, longer than "
            f"{format_duration(limit)} (three archive_timeouts and a minute); the scheduler "
            "is stuck or gone and the figures shown are old"
        )
        problems.append(("stale", text))
    if pitr.newest is None and not pitr.backup_count:
        text = "physical backups: none yet, a point-in-time restore has nothing to start from"
        problems.append(("no-backup", text))
    run = pitr.last_backup_run
    if run is not None and not run.ok:
        at = run.finished_at.isoformat() if run.finished_at else "?"
        text = (
            f"physical backup failed ({run.type}, {_ago(run.finished_at, now)}): {run.error or '?'}"
        )
        problems.append((f"backup-failed:{at}", text))
    drill = pitr.last_drill
    if drill is not None and not drill.ok:
        at = drill.finished_at.isoformat() if drill.finished_at else "?"
        said = drill.error or drill.summary or "?"
        text = (
            f"physical drill failed ({drill.backup or '?'}, {_ago(drill.finished_at, now)}): {said}"
        )
        problems.append((f"drill-failed:{at}", text))
    return problems


def pitr_reasons(backups: BackupFacts | None, now: datetime) -> list[str]:
    """``status``'s ATTENTION lines; none when the backups could not be read (their own line
    says so) or nothing is archived."""
    if backups is None or backups.problem is not None:
        return []
    return [text for _, text in pitr_problems(backups.pitr, now)]


def _backup_text(backup: PhysicalBackup, now: datetime) -> str:
    finished = backup.stopped_at or backup.started_at
    age = f", {format_duration(now - finished)} old" if finished else ""
    size = f", {format_bytes(backup.size_bytes)}" if backup.size_bytes is not None else ""
    return f"{backup.label} ({backup.type}{age}{size})"


def reach_text(pitr: PitrFacts, now: datetime) -> str:
    """How far back a restore can go."""
    if pitr.oldest_backup_at is None:
        return "a restore can reach no point yet"
    oldest = pitr.oldest_backup_at
    return f"restores reach back to {_moment(oldest)} ({format_duration(now - oldest)} ago)"


def drill_text(drill: PhysicalDrill | None, now: datetime) -> str:
    if drill is None:
        return "none yet"
    said = drill.summary or ("ok" if drill.ok else f"failed: {drill.error or '?'}")
    return f"{said} ({_ago(drill.finished_at, now)})"


def pitr_lines(pitr: PitrFacts | None, now: datetime) -> list[str]:
    """``status``'s lines for archiving and physical backups; none without archiving."""
    if pitr is None:
        return []
    archive = pitr.archive
    last = "no segment archived yet"
    if archive.last_archived_wal:
        archived = _ago(archive.last_archived_at, now)
        last = f"last segment {archive.last_archived_wal} archived {archived}"
    pending = _segments(archive.pending_segments) + " waiting"
    if archive.oldest_pending_age_s is not None and archive.pending_segments:
        pending += f" (oldest {format_duration(timedelta(seconds=archive.oldest_pending_age_s))})"
    wal = format_bytes(archive.pg_wal_bytes) if archive.pg_wal_bytes is not None else "?"
    free = (
        f", repository disk {format_bytes(archive.repo_free_bytes)} free"
        if archive.repo_free_bytes is not None
        else ""
    )
    lines = [
        f"WAL archive: {last}; {pending}, pg_wal {wal}{free} (checked {_ago(pitr.checked_at, now)})"
    ]
    newest = pitr.newest
    if newest is None:
        lines.append("physical backups: none yet")
    else:
        repo = f", {format_bytes(pitr.repo_bytes)} in the repository" if pitr.repo_bytes else ""
        lines.append(
            f"physical backups: newest {_backup_text(newest, now)}, {pitr.backup_count} in all"
            f"{repo}; {reach_text(pitr, now)}"
        )
    lines.append(f"last physical drill: {drill_text(pitr.last_drill, now)}")
    return lines


def physical_table(pitr: PitrFacts, now: datetime) -> Table:
    """``backups``'s table of physical backups, newest first."""
    shown = len(pitr.backups)
    more = f", {shown} of {pitr.backup_count} shown" if pitr.backup_count > shown else ""
    table = Table(title=f"physical backups (pgBackRest{more}); {reach_text(pitr, now)}")
    for column in ("LABEL", "TYPE", "STARTED", "AGE", "SIZE", "IN REPOSITORY"):
        table.add_column(column)
    for backup in reversed(pitr.backups):
        finished = backup.stopped_at or backup.started_at
        table.add_row(
            backup.label,
            backup.type,
            _moment(backup.started_at) if backup.started_at else "?",
            format_duration(now - finished) if finished else "?",
            format_bytes(backup.size_bytes) if backup.size_bytes is not None else "?",
            format_bytes(backup.repo_bytes) if backup.repo_bytes is not None else "?",
        )
    return table

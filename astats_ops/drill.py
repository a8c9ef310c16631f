"""``drill``: prove that the newest verified backup restores, in a scratch database.

The backup is loaded the way ``restore`` loads its staging copy (parallel ``pg_restore --jobs``,
stopping at the first error) into ``<database>_astats_drill``, a database this module creates
from ``template0`` and marks with a comment. Then, on the restored copy:

* the ``alembic_version`` rows equal those recorded in the archive itself;
* every table in the archive's table of contents exists;
* every table's row count equals the count taken in the dump's own snapshot
  (``<name>.counts.json``; a backup without that file gets the other checks only).

The scratch database is dropped afterwards, whatever happened; one left by a drill that was
killed is dropped by the next drill, but only if it carries the drill's comment, so a database
that merely has that name is never touched. The scratch copy is created and dropped over a
connection to the maintenance database (see :mod:`astats_ops.scratch`); nothing runs in the live
database.

Results are kept per backup in ``<dest>/.astats-drills.json`` for ``list``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astats_ops.archive import (
    TocTable,
    large_tables,
    load,
    missing_tables,
    toc_tables,
    tool_output,
)
from astats_ops.catalog import BackupFile, recorded_counts, scan
from astats_ops.errors import OpsError
from astats_ops.fsutil import atomic_write_text
from astats_ops.pgenv import PgTarget, find_tool
from astats_ops.scratch import MarkedDatabase, created, ident
from astats_ops.snapshot import (
    ROW_COUNTS_SQL,
    PsqlSession,
    TableRows,
    parse_table_rows,
    psql_session,
)

DRILLS_FILE = ".astats-drills.json"
SCRATCH_SUFFIX = "_astats_drill"
SCRATCH_MARKER = "astats_ops restore drill scratch copy; dropped after each drill"


@dataclass(frozen=True)
class DrillResult:
    backup: str
    ok: bool
    finished: str
    restore_seconds: float | None
    tables: int
    rows_checked: int
    alembic_version: str | None
    error: str | None

    def summary(self) -> str:
        """``drill ok 2026-..., restore 3.1 s`` (or ``drill failed ...: why``)."""
        restore = "" if self.restore_seconds is None else f", restore {self.restore_seconds:.1f} s"
        if self.ok:
            return f"drill ok {self.finished}{restore}"
        return f"drill failed {self.finished}{restore}: {self.error}"


def scratch_database(database: str) -> MarkedDatabase:
    return MarkedDatabase.beside(
        database, SCRATCH_SUFFIX, SCRATCH_MARKER, "scratch database", "drill"
    )


def scratch_name(database: str) -> str:
    return scratch_database(database).name


def newest_verified(dest: Path) -> BackupFile:
    verified = [backup for backup in scan(dest) if backup.verified]
    if not verified:
        raise OpsError(f"no verified backup in {dest} to drill; take a backup first")
    return verified[-1]


def run_drill(
    dest: Path, *, env: Mapping[str, str] | None = None, tablespace: str | None = None
) -> DrillResult:
    """Drill the newest verified backup in ``dest``; record and return the result.

    ``tablespace`` puts the scratch copy on another disk, so a drill that fills it cannot
    fill the live database's disk."""
    env = dict(os.environ if env is None else env)
    backup = newest_verified(dest)
    try:
        result = _drill(backup, env, tablespace)
    except OpsError as exc:
        result = DrillResult(backup.name, False, _now(), None, 0, 0, None, str(exc))
    record(dest, result)
    return result


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _drill(backup: BackupFile, env: dict[str, str], tablespace: str | None) -> DrillResult:
    live = PgTarget.from_env(env)
    psql = find_tool("psql", env)
    pg_restore = find_tool("pg_restore", env)
    recorded = recorded_counts(backup.path)
    toc = toc_tables(pg_restore, backup.path, env, recorded)
    versions = _archive_alembic_versions(pg_restore, backup.path, env, toc)
    copy = scratch_database(live.database)
    if copy.name == live.database:
        raise OpsError(f"refusing to drill into {live.describe()}: it is the live database")
    scratch = PgTarget(live.host, live.port, live.user, copy.name)
    scratch_env = {**env, "PGDATABASE": scratch.database}
    with created(psql, env, copy, drop_after=True, tablespace=tablespace):
        started = time.monotonic()
        load(backup.path, scratch, pg_restore, scratch_env, split=large_tables(toc, recorded))
        restore_seconds = round(time.monotonic() - started, 1)
        with psql_session(psql, scratch_env, scratch.database) as session:
            rows_checked = _check_copy(session, backup, toc, recorded)
            restored_versions = _restored_alembic_versions(session, toc)
    if versions != restored_versions:
        raise OpsError(
            f"drill of {backup.name}: restored alembic_version {restored_versions} differs from "
            f"{versions} recorded in the archive"
        )
    return DrillResult(
        backup=backup.name,
        ok=True,
        finished=_now(),
        restore_seconds=restore_seconds,
        tables=len(toc),
        rows_checked=rows_checked,
        alembic_version=",".join(versions) if versions else None,
        error=None,
    )


def _archive_alembic_versions(
    pg_restore: str, dump: Path, env: Mapping[str, str], toc: list[TocTable]
) -> list[str] | None:
    """The alembic_version rows the archive holds, or None if it has no such table."""
    table = next((t for t in toc if t.table == "alembic_version"), None)
    if table is None:
        return None
    script = tool_output(
        [
            pg_restore,
            "--data-only",
            f"--schema={table.schema}",
            "--table=alembic_version",
            "--file=-",
            str(dump),
        ],
        env,
        f"reading alembic_version from {dump.name}",
    )
    rows: list[str] = []
    in_copy = False
    for line in script.splitlines():
        if line.startswith("COPY "):
            in_copy = True
        elif line == "\\.":
            in_copy = False
        elif in_copy:
            rows.append(line.split("\t")[0])
    return sorted(rows)


def _restored_alembic_versions(session: PsqlSession, toc: list[TocTable]) -> list[str] | None:
    table = next((t for t in toc if t.table == "alembic_version"), None)
    if table is None:
        return None
    line = session.request(
        "SELECT coalesce(json_agg(version_num::text ORDER BY version_num::text), '[]') "
        f"FROM {ident(table.schema)}.{ident(table.table)};"
    )
    if line is None:
        raise OpsError(f"reading the restored alembic_version failed: {session.error_text()}")
    versions: list[str] = json.loads(line)
    return versions


def _check_copy(
    session: PsqlSession, backup: BackupFile, toc: list[TocTable], recorded: dict[int, TableRows]
) -> int:
    """Every archived table exists in the copy with the recorded row count; returns how many
    tables' counts were compared."""
    line = session.request(ROW_COUNTS_SQL)
    if line is None:
        raise OpsError(f"counting rows in the restored copy failed: {session.error_text()}")
    restored = {(t.schema, t.table): t.rows for t in parse_table_rows(line)}
    missing = missing_tables(toc, restored)
    if missing:
        raise OpsError(
            f"drill of {backup.name}: tables listed in the archive are missing after restore: "
            f"{', '.join(missing[:5])}"
        )
    wrong = [
        f"{t.name} has {restored.get((t.schema, t.table))} rows, {t.rows} in the snapshot"
        for t in recorded.values()
        if t.rows is not None and restored.get((t.schema, t.table)) != t.rows
    ]
    if wrong:
        raise OpsError(f"drill of {backup.name}: row counts differ: {'; '.join(wrong[:5])}")
    return sum(1 for t in recorded.values() if t.rows is not None)


def read_drills(dest: Path) -> dict[str, dict[str, Any]]:
    try:
        drills: dict[str, dict[str, Any]] = json.loads((dest / DRILLS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return drills


def record(dest: Path, result: DrillResult) -> None:
    """Keep the latest drill per backup that still exists."""
    present = {backup.name for backup in scan(dest, check=False)}
    drills = {name: row for name, row in read_drills(dest).items() if name in present}
    drills[result.backup] = asdict(result)
    atomic_write_text(dest / DRILLS_FILE, json.dumps(drills, indent=1, sort_keys=True) + "\n")

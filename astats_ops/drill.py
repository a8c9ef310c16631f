"""``drill``: prove that the newest verified backup restores, in a scratch database.

The backup is replayed by the same code path as ``restore`` (one transaction through
``psql -v ON_ERROR_STOP=1``) into ``<database>_astats_drill``, a database this module creates
from ``template0`` and marks with a comment. Then, on the restored copy:

* the ``alembic_version`` rows equal those recorded in the archive itself;
* every table in the archive's table of contents exists;
* every table's row count equals the count taken in the dump's own snapshot
  (``<name>.counts.json``; a backup without that file gets the other checks only).

The scratch database is dropped afterwards, whatever happened; one left by a drill that was
killed is dropped by the next drill, but only if it carries the drill's comment, so a database
that merely has that name is never touched. The live database is only connected to, to create
and drop the scratch copy; nothing is run in it.

Results are kept per backup in ``<dest>/.astats-drills.json`` for ``list``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astats_ops.catalog import BackupFile, counts_path, scan
from astats_ops.errors import OpsError
from astats_ops.fsutil import atomic_write_text
from astats_ops.pgenv import PgTarget, connection_hint, find_tool
from astats_ops.proc import PIPE, spawn
from astats_ops.restore import replay
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
_TOC_TABLE = re.compile(r"^\d+; \d+ (?P<oid>\d+) (?P<kind>TABLE DATA|TABLE) (?P<rest>.+)$")


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


@dataclass(frozen=True)
class TocTable:
    oid: int
    schema: str
    table: str


def scratch_name(database: str) -> str:
    # Identifiers are cut at 63 bytes; keep the suffix, which is what marks the name.
    return database.encode()[: 63 - len(SCRATCH_SUFFIX)].decode(errors="ignore") + SCRATCH_SUFFIX


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
    recorded = _recorded_counts(backup.path)
    toc = _toc_tables(pg_restore, backup.path, env, recorded)
    versions = _archive_alembic_versions(pg_restore, backup.path, env, toc)
    scratch = PgTarget(live.host, live.port, live.user, scratch_name(live.database))
    scratch_env = {**env, "PGDATABASE": scratch.database}
    with _scratch_database(psql, env, live, scratch, tablespace):
        started = time.monotonic()
        replay(backup.path, scratch, pg_restore, psql, scratch_env)
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


def _recorded_counts(dump: Path) -> dict[int, TableRows]:
    try:
        recorded = json.loads(counts_path(dump).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise OpsError(f"unreadable row counts {counts_path(dump).name}: {exc}") from exc
    tables = parse_table_rows(json.dumps(recorded.get("tables", [])))
    return {table.oid: table for table in tables}


def _tool_output(cmd: list[str], env: Mapping[str, str], what: str) -> str:
    with spawn(cmd, env, stdout=PIPE) as tool:
        assert tool.proc.stdout is not None
        output = tool.proc.stdout.read().decode(errors="replace")
        result = tool.result()
    if not result.ok:
        raise OpsError(f"{what} failed: {result.error_text('pg_restore')}")
    return output


def _toc_tables(
    pg_restore: str, dump: Path, env: Mapping[str, str], recorded: dict[int, TableRows]
) -> list[TocTable]:
    """The archive's tables; names come from the recorded counts (exact even with spaces
    in them) and otherwise from the listing itself."""
    listing = _tool_output([pg_restore, "--list", str(dump)], env, f"listing {dump.name}")
    tables = []
    for line in listing.splitlines():
        match = _TOC_TABLE.match(line)
        if match is None or match["kind"] != "TABLE":
            continue
        oid = int(match["oid"])
        known = recorded.get(oid)
        if known is not None:
            tables.append(TocTable(oid, known.schema, known.table))
        else:
            schema, table, _ = match["rest"].split(" ", 2)
            tables.append(TocTable(oid, schema, table))
    return tables


def _archive_alembic_versions(
    pg_restore: str, dump: Path, env: Mapping[str, str], toc: list[TocTable]
) -> list[str] | None:
    """The alembic_version rows the archive holds, or None if it has no such table."""
    table = next((t for t in toc if t.table == "alembic_version"), None)
    if table is None:
        return None
    script = _tool_output(
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
    missing = [f"{t.schema}.{t.table}" for t in toc if (t.schema, t.table) not in restored]
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


@contextlib.contextmanager
def _scratch_database(
    psql: str, env: Mapping[str, str], live: PgTarget, scratch: PgTarget, tablespace: str | None
) -> Iterator[None]:
    if scratch.database == live.database:
        raise OpsError(f"refusing to drill into {live.describe()}: it is the live database")
    _drop_leftover(psql, env, live, scratch)
    placed = f" TABLESPACE {ident(tablespace)}" if tablespace else ""
    create = (
        f"CREATE DATABASE {ident(scratch.database)} TEMPLATE template0{placed};\n"
        f"COMMENT ON DATABASE {ident(scratch.database)} IS {literal(SCRATCH_MARKER)};\n"
        "SELECT 'created';"
    )
    _maintenance(psql, env, live, create, f"creating the scratch database {scratch.database}")
    drop = f"DROP DATABASE IF EXISTS {ident(scratch.database)} WITH (FORCE);\nSELECT 'dropped';"
    what = f"dropping the scratch database {scratch.database}"
    try:
        yield
    except OpsError as exc:
        try:
            _maintenance(psql, env, live, drop, what, cleanup=True)
        except OpsError as leftover:
            raise OpsError(f"{exc} (and {leftover}; the next drill drops it)") from exc
        raise
    except BaseException:
        with contextlib.suppress(OpsError):
            _maintenance(psql, env, live, drop, what, cleanup=True)
        raise
    _maintenance(psql, env, live, drop, what, cleanup=True)


def _drop_leftover(psql: str, env: Mapping[str, str], live: PgTarget, scratch: PgTarget) -> None:
    found = _maintenance(
        psql,
        env,
        live,
        "SELECT coalesce((SELECT coalesce(shobj_description(oid, 'pg_database') = "
        f"{literal(SCRATCH_MARKER)}, false) FROM pg_database WHERE datname = "
        f"{literal(scratch.database)})::text, 'absent');",
        "looking for a scratch database left by an earlier drill",
    )
    if found == "absent":
        return
    if found != "true":
        raise OpsError(
            f"database {scratch.database!r} exists but was not made by a drill; rename or drop "
            "it by hand, the drill uses that name for its scratch copy"
        )
    _maintenance(
        psql,
        env,
        live,
        f"DROP DATABASE {ident(scratch.database)} WITH (FORCE);\nSELECT 'dropped';",
        f"dropping the scratch database {scratch.database} left by an earlier drill",
    )


def _maintenance(
    psql: str, env: Mapping[str, str], live: PgTarget, sql: str, what: str, cleanup: bool = False
) -> str:
    """Run ``sql`` over a connection to the live database (nothing runs in it: these are
    database-level commands); return its last output line."""
    with psql_session(psql, env, live.database, cleanup=cleanup) as session:
        line = session.request(sql)
        if line is None:
            text = session.error_text()
            raise OpsError(f"{what} failed: {text}; {connection_hint(text)}")
    return line


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

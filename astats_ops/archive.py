"""A pg_dump custom-format archive: its tables, and loading it into an empty database.

``load`` runs ``pg_restore --jobs`` straight into the server. A backup streamed through
``astats_ops backup`` records no data offsets; pg_restore (PostgreSQL 12 and later) still
restores it in parallel, each worker finding its data by seeking from block header to block
header, so the parallel load needs no second copy of the archive.

pg_restore loads each table through one COPY, so a table of ``SPLIT_MIN_ROWS`` rows or more
(by the counts recorded with the backup) is loaded over several sessions instead
(``split_copy``). The load then runs by sections: the definitions; the other tables' data
beside the large tables' split COPYs; then indexes and constraints, on the complete data.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from astats_ops.errors import OpsError
from astats_ops.pgenv import PgTarget, connection_hint, find_tool
from astats_ops.proc import PIPE, ToolResult, run_tool, spawn
from astats_ops.snapshot import Table, TableRows
from astats_ops.split_copy import copy_in_parallel

MAX_JOBS = 4
SPLIT_MIN_ROWS = 500_000
"""A table with this many rows or more loads over several sessions."""
_TOC_TABLE = re.compile(r"^\d+; \d+ (?P<oid>\d+) (?P<kind>TABLE DATA|TABLE) (?P<rest>.+)$")


@dataclass(frozen=True)
class TocTable(Table):
    data_entry: str | None = None
    """The listing's ``TABLE DATA`` line for this table, if the archive holds its rows."""


def tool_output(cmd: list[str], env: Mapping[str, str], what: str) -> str:
    """stdout of a pg_restore run that must succeed."""
    with spawn(cmd, env, stdout=PIPE) as tool:
        assert tool.proc.stdout is not None
        output = tool.proc.stdout.read().decode(errors="replace")
        result = tool.result()
    if not result.ok:
        raise OpsError(f"{what} failed: {result.error_text('pg_restore')}")
    return output


def toc_tables(
    pg_restore: str,
    dump: Path,
    env: Mapping[str, str],
    recorded: Mapping[int, TableRows] | None = None,
) -> list[TocTable]:
    """The archive's tables; names come from the recorded counts when given (exact even with
    spaces in them) and otherwise from the listing itself."""
    listing = tool_output([pg_restore, "--list", str(dump)], env, f"listing {dump.name}")
    matches = [m for m in map(_TOC_TABLE.match, listing.splitlines()) if m is not None]
    # A TABLE DATA entry carries its table's oid.
    data = {int(m["oid"]): m.string for m in matches if m["kind"] == "TABLE DATA"}
    tables = []
    for match in matches:
        if match["kind"] != "TABLE":
            continue
        oid = int(match["oid"])
        known = (recorded or {}).get(oid)
        if known is not None:
            schema, table = known.schema, known.table
        else:
            schema, table, _ = match["rest"].split(" ", 2)
        tables.append(TocTable(oid, schema, table, data.get(oid)))
    return tables


def large_tables(toc: Iterable[TocTable], recorded: Mapping[int, TableRows]) -> list[TocTable]:
    """The tables whose data loads over several sessions: ``SPLIT_MIN_ROWS`` rows or more."""
    large = []
    for table in toc:
        rows = recorded[table.oid].rows if table.oid in recorded else None
        if table.data_entry is not None and rows is not None and rows >= SPLIT_MIN_ROWS:
            large.append(table)
    return large


def missing_tables(toc: Iterable[TocTable], present: Iterable[tuple[str, str]]) -> list[str]:
    found = set(present)
    return [t.name for t in toc if (t.schema, t.table) not in found]


def restore_jobs() -> int:
    """Parallel pg_restore jobs: one per CPU this process may use, at most ``MAX_JOBS``."""
    return max(1, min(MAX_JOBS, len(os.sched_getaffinity(0))))


def load(
    dump: Path,
    target: PgTarget,
    pg_restore: str,
    env: Mapping[str, str],
    *,
    split: Sequence[TocTable] = (),
) -> None:
    """Restore ``dump`` into the empty database ``target`` with parallel jobs, the tables in
    ``split`` each over several sessions; the first error stops it (what was loaded stays:
    the caller drops the database)."""
    jobs = restore_jobs()
    restore = [pg_restore, "--no-owner", "--exit-on-error", f"--dbname={target.database}"]
    entries = {t.data_entry for t in split if t.data_entry is not None}
    if jobs == 1 or not entries:
        _check_load(dump, target, run_tool([*restore, f"--jobs={jobs}", str(dump)], env))
        return
    psql = find_tool("psql", env)
    listing = tool_output([pg_restore, "--list", str(dump)], env, f"listing {dump.name}")
    with tempfile.NamedTemporaryFile("w", suffix=".list", encoding="utf-8") as others:
        others.writelines(
            line for line in listing.splitlines(True) if line.rstrip("\n") not in entries
        )
        others.flush()
        _check_load(dump, target, run_tool([*restore, "--section=pre-data", str(dump)], env))
        data = [*restore, "--section=data", f"--jobs={jobs}", f"--use-list={others.name}"]
        with spawn([*data, str(dump)], env) as rest:
            for entry in sorted(entries):
                copy_in_parallel(
                    dump, entry, target, pg_restore=pg_restore, psql=psql, env=env, sessions=jobs
                )
            _check_load(dump, target, rest.result())
    post = [*restore, "--section=post-data", f"--jobs={jobs}", str(dump)]
    _check_load(dump, target, run_tool(post, env))


def _check_load(dump: Path, target: PgTarget, loaded: ToolResult) -> None:
    if not loaded.ok:
        text = loaded.error_text("pg_restore")
        raise OpsError(
            f"pg_restore of {dump.name} into {target.describe()} failed: {text}; "
            f"{connection_hint(text)}"
        )

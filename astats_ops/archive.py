"""A pg_dump custom-format archive: its tables, and loading it into an empty database.

``load`` runs ``pg_restore --jobs`` straight into the server. A backup streamed through
``astats_ops backup`` records no data offsets; pg_restore (PostgreSQL 12 and later) still
restores it in parallel, each worker finding its data by seeking from block header to block
header, so the parallel load needs no second copy of the archive.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from astats_ops.errors import OpsError
from astats_ops.pgenv import PgTarget, connection_hint
from astats_ops.proc import PIPE, run_tool, spawn
from astats_ops.snapshot import TableRows

MAX_JOBS = 4
_TOC_TABLE = re.compile(r"^\d+; \d+ (?P<oid>\d+) (?P<kind>TABLE DATA|TABLE) (?P<rest>.+)$")


@dataclass(frozen=True)
class TocTable:
    oid: int
    schema: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


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
    tables = []
    for line in listing.splitlines():
        match = _TOC_TABLE.match(line)
        if match is None or match["kind"] != "TABLE":
            continue
        oid = int(match["oid"])
        known = (recorded or {}).get(oid)
        if known is not None:
            tables.append(TocTable(oid, known.schema, known.table))
        else:
            schema, table, _ = match["rest"].split(" ", 2)
            tables.append(TocTable(oid, schema, table))
    return tables


def missing_tables(toc: Iterable[TocTable], present: Iterable[tuple[str, str]]) -> list[str]:
    found = set(present)
    return [t.name for t in toc if (t.schema, t.table) not in found]


def restore_jobs() -> int:
    """Parallel pg_restore jobs: one per CPU this process may use, at most ``MAX_JOBS``."""
    return max(1, min(MAX_JOBS, len(os.sched_getaffinity(0))))


def load(dump: Path, target: PgTarget, pg_restore: str, env: Mapping[str, str]) -> None:
    """Restore ``dump`` into the empty database ``target`` with parallel jobs; the first
    error stops it (what was loaded stays: the caller drops the database)."""
    loaded = run_tool(
        [
            pg_restore,
            f"--jobs={restore_jobs()}",
            "--no-owner",
            "--exit-on-error",
            f"--dbname={target.database}",
            str(dump),
        ],
        env,
    )
    if not loaded.ok:
        text = loaded.error_text("pg_restore")
        raise OpsError(
            f"pg_restore of {dump.name} into {target.describe()} failed: {text}; "
            f"{connection_hint(text)}"
        )

"""A psql session holding the snapshot a backup is dumped from, and row counts taken in it.

The session exports its REPEATABLE READ snapshot; ``pg_dump --snapshot`` dumps exactly what
that snapshot sees, so the counts taken in the same session are the rows the dump holds,
whatever writes run meanwhile. The session stays open until the dump ends, so the snapshot
cannot vanish before pg_dump has imported it.

The same count query, run on a restored copy, is what the restore drill compares against.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from astats_ops.errors import OpsError, tool_error_text
from astats_ops.proc import PIPE, Spawned, spawn

T = TypeVar("T")

# One scan per table, in one statement: query_to_xml runs the generated count for each
# table. Ordinary tables only: partitioned parents hold no rows of their own, and the data of
# extension tables is not dumped as such.
ROW_COUNTS_SQL = r"""SELECT coalesce(json_agg(json_build_object(
    'oid', c.oid, 'schema', n.nspname, 'table', c.relname,
    'rows', CASE WHEN c.relkind = 'r' THEN (xpath('/row/n/text()', query_to_xml(
        format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, ''
    )))[1]::text::bigint END) ORDER BY n.nspname, c.relname), '[]')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'
    AND n.nspname NOT LIKE 'pg\_%'
    AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
            AND d.deptype = 'e');"""
_MARKER = "--astats-ops-done--"
_PSQL_PREFIX = re.compile(r"^psql:<stdin>:\d+: ", re.MULTILINE)


@dataclass(frozen=True)
class Table:
    """A table as a dump knows it: its oid in the dumped database, and its name."""

    oid: int
    schema: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class TableRows(Table):
    rows: int | None


class PsqlSession:
    """A psql process fed statements one request at a time."""

    def __init__(self, tool: Spawned) -> None:
        self.tool = tool

    def request(self, sql: str) -> str | None:
        """The last line ``sql`` printed, or None when it printed nothing (an error)."""
        stdin, stdout = self.tool.proc.stdin, self.tool.proc.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(f"{sql}\n\\echo {_MARKER}\n".encode())
            stdin.flush()
        except BrokenPipeError:
            return None
        last = None
        while line := stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            if text == _MARKER:
                return last
            last = text
        return None

    def error_text(self) -> str:
        return psql_error_text(self.tool.stderr_text())

    def close(self) -> None:
        """End the session; an open transaction (the snapshot's, read-only) just ends."""
        stdin = self.tool.proc.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError):
            stdin.close()
        self.tool.proc.wait()


def psql_error_text(stderr: str) -> str:
    """psql's errors as one line, without the ``psql:<stdin>:N:`` each one starts with."""
    return tool_error_text(_PSQL_PREFIX.sub("", stderr), "psql")


@contextlib.contextmanager
def psql_session(
    psql: str,
    env: Mapping[str, str],
    database: str,
    *,
    stop_on_error: bool = True,
    cleanup: bool = False,
) -> Iterator[PsqlSession]:
    """A session that, with ``stop_on_error``, ends at the first failed statement, so a
    request never runs past an error."""
    command = [psql, "-X", "-A", "-t", "-q", f"--dbname={database}"]
    if stop_on_error:
        command += ["-v", "ON_ERROR_STOP=1"]
    with spawn(command, env, stdin=PIPE, stdout=PIPE, cleanup=cleanup) as tool:
        session = PsqlSession(tool)
        yield session
        session.close()


def count_rows(session: PsqlSession) -> list[TableRows]:
    """Row counts of every user table as the session's transaction sees them."""
    # Inside a savepoint, so a failed count leaves the snapshot (held by the outer
    # transaction) in place for a pg_dump that may still be importing it. One backend
    # scans at a time: the count runs beside the dump and must not take the CPUs it needs.
    line = session.request(
        "SAVEPOINT counting;\nSET LOCAL max_parallel_workers_per_gather = 0;\n"
        f"{ROW_COUNTS_SQL}\nROLLBACK TO SAVEPOINT counting;"
    )
    if line is None:
        raise OpsError(f"counting rows failed: {session.error_text()}")
    return parse_table_rows(line)


def parse_table_rows(text: str) -> list[TableRows]:
    return [
        TableRows(int(item["oid"]), item["schema"], item["table"], item["rows"])
        for item in json.loads(text)
    ]


def export_snapshot(session: PsqlSession) -> str | None:
    """Open the session's REPEATABLE READ transaction and name its snapshot."""
    return session.request(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_catalog.pg_export_snapshot();"
    )


class Background(Generic[T]):
    """``action`` in a thread; ``result()`` returns its value or raises its exception."""

    def __init__(self, action: Callable[[], T]) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(action,), daemon=True)
        self._thread.start()

    def _run(self, action: Callable[[], T]) -> None:
        try:
            self._value = action()
        except BaseException as exc:
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value

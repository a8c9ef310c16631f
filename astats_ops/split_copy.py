"""Loading one large table's data over several sessions at once.

``pg_restore --jobs`` loads different tables side by side, but each table's rows go through one
``COPY``, in one server process: a database whose data sits mostly in one table restores at
the speed of one CPU. Here ``pg_restore --file=-`` writes that table's ``COPY`` out as text and
its rows are dealt, in blocks of whole lines, to several ``psql`` sessions, each running the
same ``COPY`` into the same table; the server parses and stores the blocks in parallel.

The bytes are moved with ``splice(2)``, pipe to pipe, so they never pass through Python; only
the few bytes that finish a block's last line are read here. COPY's text format escapes
newlines inside values, so every line is one row and a block of whole lines is a valid COPY
stream on its own. Each session commits on its own: this is only used to fill a database
nothing else sees yet (a restore's staging copy, a drill's scratch copy), whose caller drops it
if any part fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from astats_ops.errors import OpsError
from astats_ops.pgenv import PgTarget, connection_hint
from astats_ops.proc import PIPE, Spawned, check_cancelled, spawn
from astats_ops.snapshot import psql_error_text

BLOCK = 1 << 20
"""Bytes dealt to one session at a time (then to the end of the line they stop in)."""
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, which Python 3.11 does not name
_COPY = b"COPY "


def copy_in_parallel(
    dump: Path,
    entry: str,
    target: PgTarget,
    *,
    pg_restore: str,
    psql: str,
    env: Mapping[str, str],
    sessions: int,
) -> None:
    """Load the data of the archive's TOC ``entry`` (a ``TABLE DATA`` line of ``pg_restore
    --list``) into ``target`` over ``sessions`` psql sessions."""
    with tempfile.NamedTemporaryFile("w", suffix=".list", encoding="utf-8") as listed:
        listed.write(f"{entry}\n")
        listed.flush()
        source_cmd = [pg_restore, f"--use-list={listed.name}", "--file=-", str(dump)]
        session_cmd = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={target.database}"]
        with contextlib.ExitStack() as running:
            source = running.enter_context(spawn(source_cmd, env, stdout=PIPE))
            workers = [
                running.enter_context(spawn(session_cmd, env, stdin=PIPE)) for _ in range(sessions)
            ]
            _feed(source, workers)
            check_cancelled()
            failed = [w for w in workers if not w.result().ok]
            if failed:
                text = psql_error_text(failed[0].stderr_text())
                raise OpsError(
                    f"loading {_table(entry)} in {sessions} sessions into {target.describe()} "
                    f"failed: {text}; {connection_hint(text)}"
                )
            read = source.result()
            if not read.ok:
                text = read.error_text("pg_restore")
                raise OpsError(f"reading {_table(entry)} from {dump.name} failed: {text}")


def _feed(source: Spawned, workers: Sequence[Spawned]) -> None:
    """Give every session the script's settings and the COPY line, then deal out the rows; a
    session that ends early stops the dealing (its error is what the caller reports)."""
    assert source.proc.stdout is not None
    src = source.proc.stdout.fileno()
    sinks = []
    for worker in workers:
        assert worker.proc.stdin is not None
        sinks.append(worker.proc.stdin.fileno())
    for fd in (src, *sinks):
        with contextlib.suppress(OSError):  # a larger pipe only saves system calls
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    try:
        header = _through_copy_line(src)
        for sink in sinks:
            _write_all(sink, header)
        _deal(src, sinks)
    except BrokenPipeError:
        pass
    finally:
        for worker in workers:
            assert worker.proc.stdin is not None
            with contextlib.suppress(OSError):
                worker.proc.stdin.close()


def _through_copy_line(src: int) -> bytes:
    """What the script says up to and including its COPY line, read a byte at a time so that
    not one byte of the rows is taken from the pipe."""
    script = bytearray()
    line_start = 0
    while byte := os.read(src, 1):
        script += byte
        if byte == b"\n":
            if script.startswith(_COPY, line_start):
                return bytes(script)
            line_start = len(script)
    raise OpsError("the archive's script for the table ended before its COPY line")


def _deal(src: int, sinks: Sequence[int]) -> None:
    """Move the rows from ``src`` to the sessions, a block at a time, each block ending at a
    line's end; whichever session can take more gets the next block."""
    carried = b""  # read past the end of a block: the start of the next block
    turn = 0
    while True:
        _, ready, _ = select.select([], sinks, [])
        sink = ready[turn % len(ready)]
        turn += 1
        _write_all(sink, carried)
        _splice_up_to(src, sink, BLOCK)
        while True:
            more = os.read(src, 65536)
            if not more:
                return
            end = more.find(b"\n")
            if end >= 0:
                _write_all(sink, more[: end + 1])
                carried = more[end + 1 :]
                break
            _write_all(sink, more)


def _splice_up_to(src: int, sink: int, count: int) -> None:
    moved = 0
    while moved < count:
        step = os.splice(src, sink, count - moved)
        if step == 0:
            return
        moved += step


def _write_all(sink: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(sink, view) :]


def _table(entry: str) -> str:
    """``schema.table`` from a TOC line ``id; 0 oid TABLE DATA schema table owner``."""
    words = entry.split(" ")
    return ".".join(words[5:7]) if len(words) >= 7 else entry

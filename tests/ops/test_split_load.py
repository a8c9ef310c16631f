"""A large table's rows load over several sessions, for a restore and a drill, exactly as one
COPY would load them; a session that fails fails the load and leaves the live database alone."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from astats_ops import archive, pgenv, split_copy
from astats_ops.drill import run_drill
from astats_ops.errors import OpsError
from astats_ops.restore import restore_backup
from tests.ops.helpers import database_fingerprint, databases, run_cli
from tests.support.postgres import PostgresCluster

# Rows COPY's text format must escape: tabs, newlines, backslashes, a lone "\.", NULLs, text
# in several scripts, bytes, and one row larger than a dealt block.
AWKWARD_SQL = r"""
CREATE TABLE public.notes (id int PRIMARY KEY, body text, raw bytea, tags text[]);
INSERT INTO public.notes
    SELECT g,
        CASE g % 6
            WHEN 0 THEN E'tab\there\nnew line\\back slash'
            WHEN 1 THEN NULL
            WHEN 2 THEN E'\\.'
            WHEN 3 THEN 'Grüße, 你好, مرحبا ' || g
            WHEN 4 THEN E'\r\n'
            ELSE repeat('x', g % 97)
        END,
        decode(md5(g::text), 'hex'),
        ARRAY['a,b', E'c\td', NULL]
    FROM generate_series(1, 3000) AS g;
INSERT INTO public.notes VALUES (0, repeat(E'big\t', 100000), NULL, NULL);
"""


@pytest.fixture
def awkward(seeded: PostgresCluster) -> PostgresCluster:
    seeded.psql(AWKWARD_SQL)
    return seeded


@pytest.fixture
def split_small(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Split every table of 1000 rows or more over 3 sessions, dealt in 4 kB blocks; returns
    the TOC entries loaded that way."""
    monkeypatch.setattr(archive, "SPLIT_MIN_ROWS", 1000)
    monkeypatch.setattr(archive, "restore_jobs", lambda: 3)
    monkeypatch.setattr(split_copy, "BLOCK", 4096)
    loaded: list[str] = []
    real = split_copy.copy_in_parallel

    def recording(dump: Path, entry: str, *args: Any, **kwargs: Any) -> None:
        loaded.append(entry)
        real(dump, entry, *args, **kwargs)

    monkeypatch.setattr(archive, "copy_in_parallel", recording)
    return loaded


def take_backup(pg: PostgresCluster, dest: Path) -> Path:
    result = run_cli("backup", "--dest", dest, env=pg.env())
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def split_tables(entries: list[str]) -> list[str]:
    return sorted(" ".join(entry.split(" ")[5:7]) for entry in entries)


def test_restore_loads_large_tables_over_several_sessions_exactly(
    awkward: PostgresCluster, dest: Path, split_small: list[str]
) -> None:
    before = database_fingerprint(awkward)
    dump = take_backup(awkward, dest)
    awkward.psql("DELETE FROM public.notes WHERE id % 2 = 0; TRUNCATE public.matches")

    restore_backup(dump, assume_yes=True, env=awkward.env())

    assert split_tables(split_small) == ["public matches", "public notes", "public players"]
    assert database_fingerprint(awkward) == before


def test_a_drill_loads_large_tables_over_several_sessions_and_counts_them(
    awkward: PostgresCluster, dest: Path, split_small: list[str]
) -> None:
    take_backup(awkward, dest)

    result = run_drill(dest, env=awkward.env())

    assert result.ok, result.error
    assert split_tables(split_small) == ["public matches", "public notes", "public players"]
    assert result.tables == result.rows_checked == 4


def test_a_session_that_fails_fails_the_restore_and_changes_nothing(
    awkward: PostgresCluster,
    dest: Path,
    split_small: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dump = take_backup(awkward, dest)
    awkward.psql("DELETE FROM public.notes WHERE id % 2 = 0")
    damaged = database_fingerprint(awkward)
    # A session that takes some rows, then fails as a full disk would.
    failing = tmp_path / "psql"
    failing.write_text(
        "#!/bin/sh\nhead -c 20000 >/dev/null\n"
        "echo 'psql:<stdin>:27: ERROR:  could not extend file: No space left on device' >&2\n"
        "exit 3\n"
    )
    failing.chmod(0o755)
    real_find_tool = pgenv.find_tool
    monkeypatch.setattr(
        archive,
        "find_tool",
        lambda name, env=None: str(failing) if name == "psql" else real_find_tool(name, env),
    )

    with pytest.raises(OpsError) as failed:
        restore_backup(dump, assume_yes=True, env=awkward.env())

    message = str(failed.value)
    assert "\n" not in message
    assert "restore of" in message and "was rolled back" in message
    assert "in 3 sessions" in message
    assert "No space left on device" in message
    assert "psql:<stdin>" not in message
    assert database_fingerprint(awkward) == damaged
    assert not {name for name in databases(awkward) if "_astats_" in name}


def _dealt(lines: list[bytes], sinks: int) -> list[bytes]:
    """Run the dealer over real pipes; what each sink received."""
    src_read, src_write = os.pipe()
    pipes = [os.pipe() for _ in range(sinks)]
    received = [bytearray() for _ in range(sinks)]

    def drain(index: int) -> None:
        while chunk := os.read(pipes[index][0], 65536):
            received[index] += chunk

    def produce() -> None:
        with os.fdopen(src_write, "wb") as out:
            out.writelines(lines)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(sinks)]
    threads.append(threading.Thread(target=produce))
    for thread in threads:
        thread.start()
    try:
        split_copy._deal(src_read, [write for _, write in pipes])
    finally:
        os.close(src_read)
        for _, write in pipes:
            os.close(write)
    for thread in threads:
        thread.join()
    for read, _ in pipes:
        os.close(read)
    return [bytes(data) for data in received]


@pytest.mark.parametrize(("sinks", "block"), [(1, 4096), (2, 1), (3, 100), (4, 4096)])
def test_the_dealer_hands_out_whole_lines_and_every_line_once(
    sinks: int, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines shorter and longer than a block, each block handed to whichever sink is free."""
    monkeypatch.setattr(split_copy, "BLOCK", block)
    rng = random.Random(sinks * 1000 + block)
    lengths = [rng.choice([0, 1, 5, 80, 3000, 70000]) for _ in range(2000)]
    lines = [b"%d:" % n + b"y" * length + b"\n" for n, length in enumerate(lengths)]

    received = _dealt(lines, sinks)

    assert all(not data or data.endswith(b"\n") for data in received)
    got = sorted(line for data in received for line in data.splitlines(keepends=True))
    assert got == sorted(lines)
    if sinks > 1:
        assert sum(1 for data in received if data) > 1

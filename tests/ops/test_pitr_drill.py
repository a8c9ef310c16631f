"""The physical drill: the newest backup plus every archived segment restore into a scratch
server that is always stopped and removed; a corrupt backup fails it in one line and touches
nothing else."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from astats_ops.pitr_drill import SCRATCH_DIR
from tests.ops.helpers import directory_state
from tests.ops.pitr_support import (
    Archiving,
    archiving_cluster,
    as_postgres,
    chown_postgres,
    run_ops,
)

ALEMBIC_SQL = """
CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO public.alembic_version VALUES ('4f2a9c1d7e3b');
CREATE TABLE public.players (id int);
INSERT INTO public.players SELECT generate_series(1, 500);
"""


@pytest.fixture
def backed_up() -> Iterator[Archiving]:
    """A cluster with one full physical backup."""
    with archiving_cluster() as archiving:
        archiving.pg.psql(ALEMBIC_SQL, user="postgres")
        archiving.wait_archived(archiving.switch_wal())
        env = archiving.env()
        for command in (["stanza-create"], ["backup", "--type=full"]):
            made = run_ops_pgbackrest(command, env)
            assert made.returncode == 0, made.stderr
        yield archiving


def run_ops_pgbackrest(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        as_postgres(["pgbackrest", *args]), env=env, capture_output=True, text=True, check=False
    )


def scratch_processes(scratch: Path) -> list[str]:
    found = []
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(scratch) in status.read_bytes().decode(errors="replace"):
                found.append(status.parent.name)
        except OSError:
            continue
    return found


def test_the_drill_replays_the_archive_after_the_backup(backed_up: Archiving) -> None:
    # Written after the backup: only the archived WAL brings it back.
    backed_up.sql(
        "CREATE TABLE public.after_backup (n int); INSERT INTO public.after_backup VALUES (1);"
    )
    leftover = backed_up.dest / SCRATCH_DIR
    (leftover / "data").mkdir(parents=True)
    (leftover / "data" / "junk").write_text("left by a killed drill")
    for path in (leftover, leftover / "data", leftover / "data" / "junk"):
        chown_postgres(path)

    result = run_ops("pitr-drill", "--dest", backed_up.dest, env=backed_up.env())

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("physical drill ok: ") and "recovered to 20" in result.stdout
    assert not leftover.exists(), "the scratch copy (and the leftover) are removed"
    assert scratch_processes(leftover) == []


def test_a_migration_after_the_backup_is_in_the_drill(backed_up: Archiving) -> None:
    """The restored alembic_version must equal the live one: the archived WAL brings it."""
    backed_up.sql("UPDATE public.alembic_version SET version_num = 'aaaa0000bbbb';")
    backed_up.wait_archived(backed_up.switch_wal())

    result = run_ops("pitr-drill", "--dest", backed_up.dest, env=backed_up.env())

    assert result.returncode == 0, result.stderr


def test_a_corrupt_backup_file_fails_the_drill_in_one_line_and_touches_nothing_else(
    backed_up: Archiving,
) -> None:
    backup_dir = next((backed_up.repo / "backup" / "astats").glob("*F"))
    victim = max((backup_dir / "pg_data" / "base").rglob("*.lz4"), key=lambda p: p.stat().st_size)
    body = bytearray(victim.read_bytes())
    body[100:200] = bytes(b ^ 0xFF for b in body[100:200])
    victim.write_bytes(bytes(body))
    repo_before = directory_state(backed_up.repo / "backup")
    dest_before = directory_state(backed_up.dest)
    live_before = backed_up.sql("SELECT count(*) FROM public.players;")

    result = run_ops("pitr-drill", "--dest", backed_up.dest, env=backed_up.env())

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("astats_ops pitr-drill: error: pgbackrest restore ")
    assert "ERROR: [" in lines[0]
    assert directory_state(backed_up.repo / "backup") == repo_before
    assert directory_state(backed_up.dest) == dest_before
    assert not (backed_up.dest / SCRATCH_DIR).exists()
    assert backed_up.sql("SELECT count(*) FROM public.players;") == live_before


def test_pitr_status_lists_the_backup(backed_up: Archiving) -> None:
    shown = run_ops("pitr-status", "--json", env=backed_up.env())

    assert shown.returncode == 0, shown.stderr
    block = json.loads(shown.stdout)
    assert block["backups"] == 1 and block["newest_backup"]["type"] == "full"
    assert block["oldest_backup_at"] == block["newest_backup"]["stopped_at"]
    assert block["archive"]["failing"] is False and block["problems"] == []
    assert block["archive_timeout_s"] == 60, "the server's archive_timeout is 0 (off)"

"""A failed backup says what failed in one line and leaves the backup folder exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from astats_ops.backup import create_backup
from tests.ops.helpers import (
    directory_state,
    remount_read_only,
    run_cli,
    tmpfs,
)
from tests.support.errors import assert_one_line_error
from tests.support.postgres import PostgresCluster, postgres_cluster

NOISE_SQL = """
CREATE TABLE public.noise AS
    SELECT g, (SELECT string_agg(md5(random()::text || g || h), '')
               FROM generate_series(1, 50) AS h) AS body
    FROM generate_series(1, 2000) AS g;
"""


def with_old_backup(pg: PostgresCluster, dest: Path) -> dict[str, tuple[int, str]]:
    """Put an existing good backup in ``dest`` and return the folder's state."""
    create_backup(dest, env=pg.env(), now=datetime(2024, 1, 1, tzinfo=UTC))
    state = directory_state(dest)
    assert len(state) == 3, state
    return state


@pytest.fixture
def stopped_cluster() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        cluster.stop()
        yield cluster


def test_server_down(stopped_cluster: PostgresCluster, dest: Path) -> None:
    before = directory_state(dest)
    result = run_cli("backup", "--dest", dest, env=stopped_cluster.env())
    assert_one_line_error(result, "pg_dump of database 'astats'", "failed", "check PGHOST/PGPORT")
    assert directory_state(dest) == before == {}


def test_wrong_password(seeded: PostgresCluster, dest: Path) -> None:
    before = with_old_backup(seeded, dest)
    result = run_cli("backup", "--dest", dest, env=seeded.env(password="not-the-password"))
    assert_one_line_error(result, "password authentication failed", "check PGUSER and PGPASSWORD")
    assert directory_state(dest) == before


def test_unknown_database(seeded: PostgresCluster, dest: Path) -> None:
    before = with_old_backup(seeded, dest)
    result = run_cli("backup", "--dest", dest, env=seeded.env(database="nosuchdb"))
    assert_one_line_error(result, 'database "nosuchdb" does not exist', "check PGDATABASE")
    assert directory_state(dest) == before


def test_missing_folder(seeded: PostgresCluster, tmp_path: Path) -> None:
    result = run_cli("backup", "--dest", tmp_path / "absent", env=seeded.env())
    assert_one_line_error(result, "does not exist", "--dest")
    assert directory_state(tmp_path) == {}


def test_destination_is_a_file(seeded: PostgresCluster, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("keep me")
    result = run_cli("backup", "--dest", target, env=seeded.env())
    assert_one_line_error(result, "is not a directory")
    assert target.read_text() == "keep me"


def test_read_only_folder(seeded: PostgresCluster) -> None:
    with tmpfs("4m") as volume:
        before = with_old_backup(seeded, volume)
        remount_read_only(volume)
        result = run_cli("backup", "--dest", volume, env=seeded.env())
        assert_one_line_error(result, "cannot write to backup directory", "read-only file system")
        assert directory_state(volume) == before


def test_disk_full(seeded: PostgresCluster) -> None:
    with tmpfs("512k") as volume:
        before = with_old_backup(seeded, volume)
        seeded.psql(NOISE_SQL)
        result = run_cli("backup", "--dest", volume, env=seeded.env())
        assert_one_line_error(result, "pg_dump", "no space left on device", "check free space")
        assert directory_state(volume) == before


def test_pg_dump_error_midway(seeded: PostgresCluster, dest: Path) -> None:
    """pg_dump itself fails (a table the backup role may not read)."""
    before = with_old_backup(seeded, dest)
    seeded.psql("CREATE TABLE public.secret (id int)", user="postgres")
    result = run_cli("backup", "--dest", dest, env=seeded.env())
    assert_one_line_error(result, "pg_dump of database 'astats'", "permission denied")
    assert directory_state(dest) == before


def test_missing_pg_dump(seeded: PostgresCluster, dest: Path, tmp_path: Path) -> None:
    before = with_old_backup(seeded, dest)
    env = seeded.env()
    env["PG_BINDIR"] = str(tmp_path / "no-bin")
    result = run_cli("backup", "--dest", dest, env=env)
    assert_one_line_error(result, "pg_dump not found")
    assert directory_state(dest) == before

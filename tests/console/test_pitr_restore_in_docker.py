"""``astats restore --to/--latest`` up to the switch, against the real database image (the
stand-in with pgBackRest added) archiving into its repository volume. The switch itself runs
the real engine: tests/e2e/test_pitr.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from docker.client import DockerClient
from docker.models.containers import Container

from tests.console.conftest import Images
from tests.console.helpers import astats
from tests.console.ministack import DB_NAME, DB_USER, MiniStack


@dataclass
class Archiving:
    stack: MiniStack
    db: Container

    def sql(self, statement: str) -> str:
        code, output = self.db.exec_run(
            [
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                DB_USER,
                "-d",
                DB_NAME,
                "-h",
                "/var/run/postgresql",
                "-c",
                statement,
            ],
            user="postgres",
        )
        assert code == 0, output.decode()
        return str(output.decode()).strip()

    def pgbackrest(self, *args: str) -> str:
        code, output = self.db.exec_run(["pgbackrest", *args], user="postgres")
        assert code == 0, output.decode()
        return str(output.decode())

    def info(self) -> str:
        _, output = self.db.exec_run(["pgbackrest", "info", "--output=json"], user="postgres")
        return str(output.decode()).replace(" ", "")

    def volumes(self, engine: DockerClient) -> set[str]:
        return {
            v.name
            for v in engine.volumes.list(filters={"label": f"astats.stack={self.stack.name}"})
        }


@pytest.fixture
def archiving(ministack: MiniStack, console_images: Images) -> Iterator[Archiving]:
    db = ministack.archiving_database(console_images.database)
    ministack.wait_for(db, "healthy")
    deployed = Archiving(ministack, db)
    deployed.sql(
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
        "INSERT INTO alembic_version VALUES ('r1');"
        "CREATE TABLE marks (name text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());"
        "INSERT INTO marks (name) SELECT 'seed-' || i FROM generate_series(1, 100) i"
    )
    # Nobody runs stanza-create: the archive command creates the stanza on its first push.
    deployed.sql("SELECT pg_switch_wal()")
    deadline = time.monotonic() + 60
    while '"max":"0000' not in deployed.info():
        assert time.monotonic() < deadline, deployed.info()
        time.sleep(0.5)
    deployed.pgbackrest("backup", "--type=full")
    yield deployed


def write_then_archive(deployed: Archiving) -> tuple[datetime, datetime]:
    """'early' then 'late', a second apart, both archived; returns a time between them."""
    deployed.sql("INSERT INTO marks (name) VALUES ('early')")
    time.sleep(1.2)
    between = datetime.now(UTC)
    time.sleep(1.2)
    deployed.sql("INSERT INTO marks (name) VALUES ('late')")
    deployed.pgbackrest("check")  # switches WAL and waits until it is archived
    return between - timedelta(seconds=0.6), between + timedelta(seconds=0.6)


def test_a_restore_to_a_time_between_two_writes_keeps_the_earlier_only(
    archiving: Archiving, engine: DockerClient
) -> None:
    before, _ = write_then_archive(archiving)
    volumes = archiving.volumes(engine)
    check = (
        "SELECT exists(SELECT 1 FROM marks WHERE name = 'early') "
        "AND NOT exists(SELECT 1 FROM marks WHERE name = 'late')"
    )
    result = astats(
        archiving.stack.name,
        "restore",
        "--to",
        before.isoformat(),
        "--check-sql",
        check,
        "--dry-run",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check ok: alembic_version r1" in result.stdout
    assert "check ok: your query: t" in result.stdout
    assert "dry run: the restore works" in result.stdout
    assert archiving.volumes(engine) == volumes, "the dry run removes its volume"
    assert archiving.sql("SELECT count(*) FROM marks WHERE name IN ('early', 'late')") == "2"


def test_a_check_that_fails_stops_before_the_switch_and_removes_the_new_volume(
    archiving: Archiving, engine: DockerClient
) -> None:
    before, _ = write_then_archive(archiving)
    volumes = archiving.volumes(engine)
    result = astats(
        archiving.stack.name,
        "restore",
        "--to",
        before.isoformat(),
        "--yes",
        "--check-sql",
        "SELECT exists(SELECT 1 FROM marks WHERE name = 'late')",
    )
    assert result.returncode == 1
    assert "check failed: your query answered 'f'" in result.stdout
    assert archiving.volumes(engine) == volumes
    archiving.db.reload()
    assert archiving.db.status == "running"


def test_latest_brings_back_the_last_write(archiving: Archiving) -> None:
    archiving.sql("INSERT INTO marks (name) VALUES ('last')")
    result = astats(
        archiving.stack.name,
        "restore",
        "--latest",
        "--dry-run",
        "--check-sql",
        "SELECT exists(SELECT 1 FROM marks WHERE name = 'last')",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pgbackrest check" in result.stdout
    assert "check ok: your query: t" in result.stdout


def test_a_target_before_the_oldest_backup_is_refused_in_one_line(
    archiving: Archiving, engine: DockerClient
) -> None:
    volumes = archiving.volumes(engine)
    for target, words in (
        ("2001-01-01T00:00:00Z", "is before the oldest backup, which ends at"),
        ("2999-01-01T00:00:00Z", "is in the future"),
        ("yesterday-ish", "is not a time"),
    ):
        result = astats(archiving.stack.name, "restore", "--to", target, "--yes")
        assert result.returncode == 1
        assert words in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert archiving.volumes(engine) == volumes


def test_a_corrupted_backup_file_fails_the_restore_and_touches_nothing(
    archiving: Archiving, engine: DockerClient
) -> None:
    before, _ = write_then_archive(archiving)
    # Corrupt one data file of the backup in the repository (its checksum no longer matches).
    code, output = archiving.db.exec_run(
        [
            "sh",
            "-c",
            "f=$(find /var/lib/pgbackrest/repo/backup -path '*pg_data/base/*' -type f "
            "-size +8k | head -n 1) && printf 'garbage' "
            '| dd of="$f" bs=1 seek=100 conv=notrunc 2>/dev/null && echo "$f"',
        ],
        user="postgres",
    )
    assert code == 0 and output.strip(), output
    volumes = archiving.volumes(engine)
    result = astats(archiving.stack.name, "restore", "--to", before.isoformat(), "--yes")
    assert result.returncode == 1
    failure = [line for line in result.stdout.splitlines() if "failed" in line]
    assert failure and "pgbackrest restore failed" in failure[0], result.stdout
    assert archiving.volumes(engine) == volumes
    archiving.db.reload()
    assert archiving.db.status == "running"
    assert archiving.sql("SELECT count(*) FROM marks") == "102"

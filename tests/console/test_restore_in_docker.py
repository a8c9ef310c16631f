"""``backup`` and ``restore`` against the real backup image and the PostgreSQL stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from docker.models.containers import Container

from tests.console.conftest import Images
from tests.console.helpers import astats
from tests.console.ministack import MiniStack, health

SERVE = ["python3", "-m", "http.server", "8000"]
SERVING = [
    "CMD",
    "python3",
    "-c",
    "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/')",
]


@dataclass
class Deployed:
    stack: MiniStack
    db: Container
    scheduler: Container
    backend: Container

    def sql(self, statement: str) -> str:
        result = astats(
            self.stack.name, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", statement
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def started_at(self) -> str:
        self.backend.reload()
        return str(self.backend.attrs["State"]["StartedAt"])


@pytest.fixture
def deployed(ministack: MiniStack, console_images: Images) -> Iterator[Deployed]:
    db = ministack.database(console_images.postgres)
    ministack.wait_for(db, "healthy")
    scheduler = ministack.scheduler(console_images.backup)
    backend = ministack.launched(
        "backend",
        console_images.python,
        SERVE,
        {"SECRET_KEY": "not-a-real-key"},
        healthcheck=health(SERVING),
    )
    ministack.wait_for(backend, "healthy")
    ministack.wait_for(scheduler, "healthy")
    yield Deployed(ministack, db, scheduler, backend)


def test_restore_brings_the_data_back_and_the_backend_healthy(deployed: Deployed) -> None:
    name = deployed.stack.name
    deployed.sql("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1), (2), (3)")
    taken = astats(name, "backup")
    assert taken.returncode == 0, taken.stderr
    path = taken.stdout.strip()
    assert path.startswith("/backups/astats-") and path.endswith(".dump")
    listed = astats(name, "backups")
    assert path.rsplit("/", 1)[1] in listed.stdout and " ok " in listed.stdout

    deployed.sql("DELETE FROM items WHERE id > 1; CREATE TABLE after_backup (x int)")
    before = deployed.started_at()
    result = astats(name, "restore", path, "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line.split("] ", 1)[1] for line in result.stdout.splitlines()]
    assert steps[0] == f"checksum ok: {path}"
    assert steps[1].startswith(f"stopping {deployed.backend.name}")
    assert f"{deployed.backend.name} is healthy" in steps and steps[-1] == "done"
    assert deployed.sql("SELECT count(*) FROM items") == "3"
    assert deployed.sql("SELECT to_regclass('after_backup') IS NULL") == "t"
    deployed.backend.reload()
    assert deployed.backend.attrs["State"]["Health"]["Status"] == "healthy"
    assert deployed.started_at() != before


def test_a_bad_checksum_changes_nothing(deployed: Deployed) -> None:
    name = deployed.stack.name
    deployed.sql("CREATE TABLE items (id int); INSERT INTO items VALUES (1)")
    path = astats(name, "backup").stdout.strip()
    deployed.scheduler.exec_run(["sh", "-c", f"printf 'garbage' >> {path}"])
    deployed.sql("INSERT INTO items VALUES (2)")
    before = deployed.started_at()

    result = astats(name, "restore", path, "--yes")
    assert result.returncode == 1
    assert "refusing to restore" in result.stderr and "checksum-mismatch" in result.stderr
    assert "nothing was changed" in result.stderr
    assert deployed.sql("SELECT count(*) FROM items") == "2"
    assert deployed.started_at() == before, "the backend was never stopped"
    report = json.loads(astats(name, "status", "--json").stdout)
    dump = path.rsplit("/", 1)[1]
    assert f"backups: the newest backup {dump} is checksum-mismatch" in report["reasons"]


def test_a_failed_restore_leaves_the_backend_stopped_and_says_what_to_do(
    deployed: Deployed,
) -> None:
    name = deployed.stack.name
    # A file whose checksum matches but which is no archive: only the replay can fail on it.
    bogus = "/backups/astats-20260101T000000Z.dump"
    deployed.scheduler.exec_run(
        [
            "sh",
            "-c",
            f"echo not a dump > {bogus} && cd /backups && "
            f"sha256sum {bogus.rsplit('/', 1)[1]} > {bogus}.sha256",
        ]
    )
    result = astats(name, "restore", bogus, "--yes")
    assert result.returncode == 1
    assert "restore failed" in result.stdout
    assert "the backend is left stopped" in result.stdout
    assert f"docker start {deployed.backend.name}" in result.stdout
    deployed.backend.reload()
    assert deployed.backend.status == "exited"


def test_backup_and_restore_need_a_running_scheduler(deployed: Deployed) -> None:
    deployed.scheduler.stop(timeout=10)
    for args in (("backup",), ("restore", "--latest-dump", "--yes"), ("backups",)):
        result = astats(deployed.stack.name, *args)
        assert result.returncode == 1
        assert result.stderr.startswith(f"astats {args[0]}: error: the backup scheduler of stack")
        assert "is not running (exited)" in result.stderr
        assert len(result.stderr.splitlines()) == 1
    deployed.backend.reload()
    assert deployed.backend.status == "running"
    assert astats(deployed.stack.name, "logs", "nope").stderr.strip() == (
        f"astats logs: error: no service 'nope' in stack '{deployed.stack.name}' "
        "(services: backend, backup, db, latest-log)"
    )

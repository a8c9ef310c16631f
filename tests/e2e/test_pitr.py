"""Point-in-time recovery on the real engine: a stack of its own that archives WAL (every 10 s
when idle), loses its data volume under a writer, and comes back through `astats restore
--latest`, which restores into a new volume and switches the stack to it with `pulumi up`;
a `pulumi preview` afterwards plans nothing, and the old volume is kept.

The writer inserts a timestamped row every 100 ms over one psql session and keeps what the
server acknowledged; every acknowledged row older than `archiveTimeoutS` before the loss must
come back. The rows and seconds lost are printed (RPO)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import ARCHIVE_TIMEOUT_S, archiving_quickly, stack_of_its_own
from tests.e2e.engine import Project, psql, running
from tests.e2e.images import StandIns

WRITE_EVERY_S = 0.1


@dataclass
class PitrDeployment:
    project: Project

    @property
    def stack(self) -> str:
        return self.project.stack

    def container(self, service: str) -> str:
        return running(self.stack, service)

    def psql(self, sql: str) -> str:
        return psql(self.stack, sql)

    def astats(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        env = self.project.env | {"PATH": os.environ["PATH"]}
        return subprocess.run(
            [sys.executable, "-m", "astats_console", "--stack", self.stack, *args],
            cwd=self.project.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout


def archiving_protected(config: dict[str, Any]) -> None:
    archiving_quickly(config)
    # Protected as in prod: the second restore must unprotect the first one's volume.
    config["astats:database"]["protectVolume"] = True


@pytest.fixture(scope="module")
def pitr(images: StandIns) -> Iterator[PitrDeployment]:
    with stack_of_its_own(images, "e2e-pitr", archiving_protected) as (project, _):
        project.up()
        yield PitrDeployment(project)


def wait_for_a_physical_backup(deployment: PitrDeployment, budget_s: float = 300) -> None:
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        info = json.loads(
            docker(
                "exec",
                "-u",
                "postgres",
                deployment.container("db"),
                "pgbackrest",
                "info",
                "--output=json",
            )
        )
        if info and info[0].get("backup"):
            return
        time.sleep(2)
    raise AssertionError("the scheduler took no physical backup")


@dataclass
class Writer:
    """INSERTs a row every 100 ms over one psql session; keeps the acknowledged ones."""

    db_container: str
    acknowledged: list[tuple[int, datetime]] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = subprocess.Popen(
            [
                "docker",
                "exec",
                "-i",
                "-u",
                "postgres",
                self.db_container,
                "psql",
                "-X",
                "-Atq",
                "-h",
                "/var/run/postgresql",
                "-U",
                "astats",
                "-d",
                "astats",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert session.stdin and session.stdout
        try:
            while not self.stopped.is_set():
                session.stdin.write(
                    "INSERT INTO rpo (at) VALUES (clock_timestamp()) RETURNING id, at;\n"
                )
                session.stdin.flush()
                line = session.stdout.readline()
                if not line:
                    return  # the server is gone
                if "|" in line:
                    ident, at = line.strip().split("|", 1)
                    self.acknowledged.append((int(ident), datetime.fromisoformat(at)))
                time.sleep(WRITE_EVERY_S)
        except (BrokenPipeError, ValueError):
            return
        finally:
            session.kill()


def test_losing_the_data_volume_under_writes_loses_at_most_the_archive_timeout(
    pitr: PitrDeployment,
) -> None:
    wait_for_a_physical_backup(pitr)
    pitr.psql("CREATE TABLE IF NOT EXISTS rpo (id bigserial PRIMARY KEY, at timestamptz)")
    db = pitr.container("db")
    old_volume = docker(
        "inspect",
        "-f",
        '{{range .Mounts}}{{if eq .Destination "/var/lib/postgresql/data"}}{{.Name}}{{end}}{{end}}',
        db,
    ).strip()
    writer = Writer(db)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    time.sleep(3 * ARCHIVE_TIMEOUT_S)
    # The disk is lost: the server killed, its container and the data volume gone (the
    # scheduler mounts the volume read-only, so it goes too).
    lost_at = datetime.now(UTC)
    docker("kill", db)
    writer.stopped.set()
    thread.join(timeout=10)
    docker("rm", "-f", db, pitr.container("backup"))
    docker("volume", "rm", old_volume)
    assert len(writer.acknowledged) > 100

    started = time.monotonic()
    result = pitr.astats("restore", "--latest", "--yes")
    wall_s = time.monotonic() - started
    print("\n" + result.stdout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "done: the database runs on" in result.stdout
    assert f"the previous volume {old_volume} is kept" in result.stdout

    restored = {int(i) for i in pitr.psql("SELECT id FROM rpo").split()}
    bound = lost_at - timedelta(seconds=ARCHIVE_TIMEOUT_S)
    missing_old = [i for i, at in writer.acknowledged if at < bound and i not in restored]
    lost = [(i, at) for i, at in writer.acknowledged if i not in restored]
    lost_s = (lost_at - min(at for _, at in lost)).total_seconds() if lost else 0.0
    print(
        f"\nRPO: {len(writer.acknowledged)} rows acknowledged, {len(lost)} lost "
        f"({lost_s:.1f} s of writes); restore --latest took {wall_s:.1f} s"
    )
    assert missing_old == [], f"{len(missing_old)} rows older than the archive timeout are lost"

    preview = pitr.project.preview("--diff", "--expect-no-changes", check=False)
    assert preview.returncode == 0, preview.output[-3000:]


def test_a_restore_to_a_time_switches_and_keeps_the_earlier_write_only(
    pitr: PitrDeployment,
) -> None:
    pitr.psql("CREATE TABLE IF NOT EXISTS marks (name text PRIMARY KEY)")
    pitr.psql("INSERT INTO marks VALUES ('early')")
    time.sleep(1.5)
    between = datetime.now(UTC)
    time.sleep(1.5)
    pitr.psql("INSERT INTO marks VALUES ('late')")
    docker("exec", "-u", "postgres", pitr.container("db"), "pgbackrest", "check")
    before = docker("inspect", "-f", "{{.Id}}", pitr.container("db")).strip()
    result = pitr.astats(
        "restore",
        "--to",
        between.isoformat(),
        "--yes",
        "--check-sql",
        "SELECT exists(SELECT 1 FROM marks WHERE name = 'early')",
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert pitr.psql("SELECT string_agg(name, ',') FROM marks") == "early"
    assert docker("inspect", "-f", "{{.Id}}", pitr.container("db")).strip() != before
    # The new timeline is archived: a later physical backup and archive check succeed.
    docker("exec", "-u", "postgres", pitr.container("db"), "pgbackrest", "check")
    preview = pitr.project.preview("--diff", "--expect-no-changes", check=False)
    assert preview.returncode == 0, preview.output[-3000:]

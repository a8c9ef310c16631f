"""Restore drills: the newest verified backup restores into a scratch database that is always
dropped; the live database and the existing backups are never touched, whatever fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from astats_ops.drill import scratch_name
from tests.ops.helpers import (
    REPO_ROOT,
    SEED_SQL,
    database_fingerprint,
    databases,
    directory_state,
    grant_createdb,
    run_cli,
    tmpfs,
)
from tests.support.errors import assert_one_line_error
from tests.support.postgres import PostgresCluster, postgres_cluster

SCRATCH = scratch_name("astats")
ALEMBIC_SQL = """
CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO public.alembic_version VALUES ('4f2a9c1d7e3b');
CREATE TABLE public."odd name" (id int);
INSERT INTO public."odd name" SELECT generate_series(1, 7);
"""
# Sleeps before loading, so a test can act while a drill's scratch database exists.
SLOW_LOAD = """#!{python}
import os, sys, time
if any(arg.startswith("--dbname=") for arg in sys.argv):
    time.sleep({seconds})
os.execv("{real}", ["{real}", *sys.argv[1:]])
"""


@pytest.fixture
def app(seeded: PostgresCluster) -> PostgresCluster:
    seeded.psql(ALEMBIC_SQL)
    return seeded


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of the test's own, for faults that take the server down."""
    with postgres_cluster() as cluster:
        grant_createdb(cluster)
        cluster.psql(SEED_SQL + ALEMBIC_SQL)
        yield cluster


def backup(pg: PostgresCluster, dest: Path) -> Path:
    result = run_cli("backup", "--dest", dest, env=pg.env())
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def slow_load_env(pg: PostgresCluster, tmp_path: Path, seconds: float) -> dict[str, str]:
    bindir = tmp_path / "slow-bin"
    bindir.mkdir()
    for tool in ("pg_dump", "pg_restore", "psql"):
        real = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if tool == "pg_restore":
            wrapper = bindir / tool
            wrapper.write_text(SLOW_LOAD.format(python=sys.executable, real=real, seconds=seconds))
            wrapper.chmod(0o755)
        else:
            (bindir / tool).symlink_to(real)
    return {**pg.env(), "PG_BINDIR": str(bindir), "PYTHONPATH": str(REPO_ROOT)}


def start_drill(dest: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "astats_ops", "drill", "--dest", str(dest)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_scratch(pg: PostgresCluster, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while SCRATCH not in databases(pg):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the drill never created its scratch database"
        time.sleep(0.05)


def test_a_drill_restores_the_newest_backup_checks_it_and_drops_the_copy(
    app: PostgresCluster, dest: Path
) -> None:
    backup(app, dest)
    newest = backup(app, dest)
    live = database_fingerprint(app)
    files = directory_state(dest)

    result = run_cli("drill", "--dest", dest, env=app.env())

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{newest.name}: drill ok "), result.stdout
    assert ", restore " in result.stdout and result.stdout.rstrip().endswith(" s")
    assert SCRATCH not in databases(app)
    assert database_fingerprint(app) == live
    assert {k: v for k, v in directory_state(dest).items() if k != ".astats-drills.json"} == files
    rows = json.loads(run_cli("list", "--dest", dest, "--json", env=app.env()).stdout)
    drill = {row["name"]: row["drill"] for row in rows}[newest.name]
    assert drill["ok"] and drill["alembic_version"] == "4f2a9c1d7e3b"
    assert drill["tables"] == 5 and drill["rows_checked"] == 5
    text = run_cli("list", "--dest", dest, env=app.env()).stdout.splitlines()
    assert text[1].startswith(newest.name) and "drill ok " in text[1] and ", restore " in text[1]
    assert text[2].rstrip().endswith("-"), "the older backup was not drilled"


def test_counts_are_taken_in_the_dumps_own_snapshot(app: PostgresCluster, dest: Path) -> None:
    path = backup(app, dest)
    counts = json.loads(path.with_name(path.name + ".counts.json").read_text())
    by_name = {f"{t['schema']}.{t['table']}": t["rows"] for t in counts["tables"]}
    assert by_name == {
        "public.alembic_version": 1,
        "public.matches": 5000,
        "public.odd name": 7,
        "public.players": 2000,
        "reporting.daily": 100,
    }
    assert counts["sha256"] in path.with_name(path.name + ".sha256").read_text()


def test_a_drill_fails_when_the_restored_rows_differ_from_the_snapshot(
    app: PostgresCluster, dest: Path
) -> None:
    path = backup(app, dest)
    counts_file = path.with_name(path.name + ".counts.json")
    counts = json.loads(counts_file.read_text())
    for table in counts["tables"]:
        if table["table"] == "matches":
            table["rows"] += 1
    counts_file.write_text(json.dumps(counts))

    result = run_cli("drill", "--dest", dest, env=app.env())

    assert_one_line_error(result, "drill failed", "row counts differ", "public.matches has 5000")
    assert SCRATCH not in databases(app)
    status = run_cli("list", "--dest", dest, env=app.env()).stdout
    assert "drill failed" in status


def test_a_scratch_database_left_by_a_killed_drill_is_dropped_by_the_next(
    app: PostgresCluster, dest: Path, tmp_path: Path
) -> None:
    backup(app, dest)
    proc = start_drill(dest, slow_load_env(app, tmp_path, 30))
    try:
        wait_for_scratch(app, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert SCRATCH in databases(app), "the killed drill had no chance to clean up"

    result = run_cli("drill", "--dest", dest, env=app.env())

    assert result.returncode == 0, result.stderr
    assert SCRATCH not in databases(app)


def test_a_database_that_only_has_the_scratch_name_is_never_dropped(
    app: PostgresCluster, dest: Path
) -> None:
    backup(app, dest)
    app.psql(f'CREATE DATABASE "{SCRATCH}"', database="postgres")
    app.psql("CREATE TABLE keep (id int)", database=SCRATCH)
    try:
        result = run_cli("drill", "--dest", dest, env=app.env())

        assert_one_line_error(result, "exists but was not made by a drill")
        assert app.psql("SELECT to_regclass('keep') IS NOT NULL", database=SCRATCH).strip() == "t"
    finally:
        app.psql(f'DROP DATABASE "{SCRATCH}"', database="postgres")


def test_the_database_going_away_mid_drill_is_one_line_and_the_next_drill_cleans_up(
    own_cluster: PostgresCluster, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    dest.mkdir()
    backup(own_cluster, dest)
    files = directory_state(dest)
    live = database_fingerprint(own_cluster)
    proc = start_drill(dest, slow_load_env(own_cluster, tmp_path, 3))
    try:
        wait_for_scratch(own_cluster, proc)
        own_cluster.stop("fast")
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert_one_line_error(result, "drill failed", "the next drill drops it")

    own_cluster.start()
    assert database_fingerprint(own_cluster) == live
    assert SCRATCH in databases(own_cluster)
    again = run_cli("drill", "--dest", dest, env=own_cluster.env())
    assert again.returncode == 0, again.stderr
    assert SCRATCH not in databases(own_cluster)
    assert {k: v for k, v in directory_state(dest).items() if k != ".astats-drills.json"} == files


NOISE_SQL = """
CREATE TABLE public.noise AS
    SELECT g, md5(g::text) || md5((g * 7)::text) AS body FROM generate_series(1, 60000) AS g;
"""


def test_a_disk_filling_during_a_drill_fails_it_and_drops_the_copy(
    app: PostgresCluster, dest: Path
) -> None:
    app.psql(NOISE_SQL)
    backup(app, dest)
    files = directory_state(dest)
    live = database_fingerprint(app)
    with tmpfs("3m") as disk:
        os.chown(disk, *postgres_ids())
        app.psql(
            f"CREATE TABLESPACE drills LOCATION '{disk}';"
            "GRANT CREATE ON TABLESPACE drills TO astats",
            user="postgres",
            database="postgres",
        )
        try:
            result = run_cli("drill", "--dest", dest, "--drill-tablespace", "drills", env=app.env())

            assert_one_line_error(result, "drill failed", "disk is full")
            assert SCRATCH not in databases(app)
        finally:
            app.psql("DROP TABLESPACE drills", user="postgres", database="postgres")
    assert database_fingerprint(app) == live
    assert {k: v for k, v in directory_state(dest).items() if k != ".astats-drills.json"} == files


def postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid

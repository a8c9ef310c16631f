"""Restore drills in the real backup image against the PostgreSQL stand-in, with faults.

The drill proves a backup restores; these tests prove what happens when something breaks
while it runs: the database container dies, the drill itself is killed, the disk it restores
onto fills up. Each time the operator gets one clear line, the scheduler turns unhealthy
where it ran the drill, the live data and the backup files stay exactly as they were, and the
scratch database does not outlive the next drill.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from components.backup import BACKUP_USER, BACKUPS_MOUNT, STATUS_FILE
from components.backup import SCRATCH as SCHEDULER_SCRATCH
from components.database import DB_ALIAS
from tests.support.ci import unavailable
from tests.support.docker import docker, hardened
from tests.support.docker_env import DATABASE, Env, sql, start_database
from tests.support.errors import assert_one_line_error

SCRATCH = f"{DATABASE.name}_astats_drill"
# Enough rows that loading the scratch copy takes seconds, so a fault can land during it.
BIG_ROWS = 1_500_000
TIMEOUT_S = 180
OPS = ["python3", "-m", "astats_ops"]
SCHEDULE_ONCE = [
    *OPS,
    "schedule",
    "--once",
    f"--dest={BACKUPS_MOUNT}",
    f"--status-file={STATUS_FILE}",
    "--interval-minutes=60",
    "--keep-last=7",
]


def fill(database: str) -> str:
    """A big table beside the stand-in's items; returns the live data's fingerprint."""
    sql(
        database,
        "CREATE TABLE events AS SELECT g AS id, md5(g::text) AS body "
        f"FROM generate_series(1, {BIG_ROWS}) AS g",
    )
    return live_data(database)


def live_data(database: str) -> str:
    return sql(
        database,
        "SELECT (SELECT count(*) || '/' || sum(id) FROM items) || ' ' || "
        "(SELECT count(*) || '/' || sum(id) || '/' || max(body) FROM events)",
    )


def databases(database: str) -> set[str]:
    return set(sql(database, "SELECT datname FROM pg_database").split())


def ops_container(env: Env, backups: str) -> str:
    """A running container of the backup image, as the scheduler runs (same user, read-only
    root and scratch space, volume and libpq environment); commands run in it with
    ``docker exec``."""
    name = create_ops(env, backups, "sleep", "infinity")
    docker("start", name)
    return name


def create_ops(env: Env, backups: str, *command: str) -> str:
    return env.create(
        *hardened(BACKUP_USER, SCHEDULER_SCRATCH),
        f"--network={env.network}",
        f"--env=PGHOST={DB_ALIAS}",
        "--env=PGPORT=5432",
        f"--env=PGUSER={DATABASE.user}",
        f"--env=PGDATABASE={DATABASE.name}",
        f"--env=PGPASSWORD={env.password}",
        f"--volume={backups}:{BACKUPS_MOUNT}",
        f"--entrypoint={command[0]}",
        env.images.backup,
        *command[1:],
    )


def ops(container: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, *args], capture_output=True, text=True, timeout=TIMEOUT_S
    )


def backup_files(container: str) -> dict[str, str]:
    """sha256 of every backup file (dumps, checksums, counts), by name."""
    listing = ops(container, "sh", "-c", f"cd {BACKUPS_MOUNT} && sha256sum *.dump*")
    assert listing.returncode == 0, listing.stderr
    return {line.split()[1]: line.split()[0] for line in listing.stdout.splitlines()}


def while_scratch_exists(
    database: str, command: list[str], fault: Callable[[], object]
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; once the drill's scratch database exists, inject ``fault``."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while SCRATCH not in databases(database):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the drill never created its scratch database"
            time.sleep(0.1)
        fault()
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def status(container: str) -> dict[str, object]:
    shown = ops(container, "cat", STATUS_FILE)
    assert shown.returncode == 0, shown.stderr
    loaded: dict[str, object] = json.loads(shown.stdout)
    return loaded


def test_a_drill_in_the_backup_image_passes_and_is_recorded(env: Env, tmp_path: Path) -> None:
    database = start_database(env, tmp_path)
    live = fill(database)
    tools = ops_container(env, env.volume("backups"))

    ran = ops(tools, *SCHEDULE_ONCE)

    assert ran.returncode == 0, ran.stderr
    drill = status(tools)["last_drill"]
    assert isinstance(drill, dict) and drill["ok"], drill
    assert drill["summary"].startswith("drill ok ") and ", restore " in drill["summary"]
    listed = ops(tools, *OPS, "list", f"--dest={BACKUPS_MOUNT}")
    [row] = listed.stdout.splitlines()[1:]
    assert " ok " in row and "drill ok " in row and row.rstrip().endswith(" s"), row
    [entry] = json.loads(ops(tools, *OPS, "list", f"--dest={BACKUPS_MOUNT}", "--json").stdout)
    assert entry["drill"]["rows_checked"] == 2 and entry["drill"]["restore_seconds"] > 0
    assert SCRATCH not in databases(database)
    assert live_data(database) == live


def test_the_database_dying_mid_drill_fails_the_run_and_the_next_drill_cleans_up(
    env: Env, tmp_path: Path
) -> None:
    database = start_database(env, tmp_path)
    live = fill(database)
    tools = ops_container(env, env.volume("backups"))
    taken = ops(tools, *OPS, "backup", f"--dest={BACKUPS_MOUNT}")
    assert taken.returncode == 0, taken.stderr
    before = backup_files(tools)

    run = while_scratch_exists(
        database, ["docker", "exec", tools, *SCHEDULE_ONCE], lambda: docker("kill", database)
    )

    line = assert_one_line_error(
        run, "run failed: drill: ", "that the database server is running", "next drill drops it"
    )
    # Killed while pg_restore ran a section, or while the big table loaded over its sessions.
    assert re.search(r"pg_restore of |loading public\.events in \d+ sessions", line), line
    assert "backup:" not in line, "the backup before the drill succeeded"
    recorded = status(tools)
    assert recorded["last_result"] == "failure"
    health = ops(tools, *OPS, "health", f"--status-file={STATUS_FILE}", "--max-age-minutes=60")
    assert health.returncode == 1 and health.stdout.startswith("unhealthy: last run failed: drill")
    after = backup_files(tools)
    assert {name: after[name] for name in before} == before
    assert len(after) == 2 * len(before), "the run's own backup is complete"

    docker("start", database)
    wait_ready(database)
    assert live_data(database) == live
    assert SCRATCH in databases(database), "the dead server could not drop it"
    again = ops(tools, *OPS, "drill", f"--dest={BACKUPS_MOUNT}")
    assert again.returncode == 0, again.stderr
    assert SCRATCH not in databases(database)
    assert backup_files(tools) == after


def wait_ready(database: str) -> None:
    deadline = time.monotonic() + 60
    while docker("exec", database, "pg_isready", "-q", check=False).returncode != 0:
        assert time.monotonic() < deadline, docker("logs", database).stderr[-2000:]
        time.sleep(0.3)


def test_a_scratch_database_left_by_a_killed_drill_is_dropped_by_the_next(
    env: Env, tmp_path: Path
) -> None:
    database = start_database(env, tmp_path)
    live = fill(database)
    backups = env.volume("backups")
    tools = ops_container(env, backups)
    taken = ops(tools, *OPS, "backup", f"--dest={BACKUPS_MOUNT}")
    assert taken.returncode == 0, taken.stderr
    before = backup_files(tools)
    drill = create_ops(env, backups, *OPS, "drill", f"--dest={BACKUPS_MOUNT}")

    killed = while_scratch_exists(
        database, ["docker", "start", "--attach", drill], lambda: docker("kill", drill)
    )

    assert killed.returncode != 0
    assert SCRATCH in databases(database), "the killed drill had no chance to clean up"
    again = ops(tools, *OPS, "drill", f"--dest={BACKUPS_MOUNT}")
    assert again.returncode == 0, again.stderr
    assert "drill ok " in again.stdout
    assert SCRATCH not in databases(database)
    assert live_data(database) == live
    assert backup_files(tools) == before


def test_a_disk_filling_during_a_drill_fails_it_in_one_line_and_drops_the_copy(
    env: Env, tmp_path: Path
) -> None:
    """The drill restores onto its own disk (``--drill-tablespace``), here a 4 MB tmpfs in the
    database container: the copy cannot fit, the live data's disk is not touched."""
    database = start_database(env, tmp_path)
    live = fill(database)
    mount_small_disk(database, "/drills")
    sql(database, "CREATE TABLESPACE drills LOCATION '/drills/space'")
    tools = ops_container(env, env.volume("backups"))
    taken = ops(tools, *OPS, "backup", f"--dest={BACKUPS_MOUNT}")
    assert taken.returncode == 0, taken.stderr
    before = backup_files(tools)

    drill = ops(tools, *OPS, "drill", f"--dest={BACKUPS_MOUNT}", "--drill-tablespace=drills")

    assert_one_line_error(drill, "drill failed", "disk is full")
    assert SCRATCH not in databases(database)
    assert live_data(database) == live
    assert backup_files(tools) == before
    listed = ops(tools, *OPS, "list", f"--dest={BACKUPS_MOUNT}")
    assert "drill failed" in listed.stdout


def mount_small_disk(database: str, path: str) -> None:
    """A 4 MB tmpfs at ``path`` in the running database container, with a directory its
    postgres user owns at ``path``/space (mounted from the host into the container's mount
    namespace: the engine grants no capabilities to ``docker exec``)."""
    docker("exec", "--user=root", database, "mkdir", "-p", path)
    pid = docker("inspect", "--format={{.State.Pid}}", database).stdout.strip()
    mount = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", path]
    mounted = subprocess.run(
        ["nsenter", f"--target={pid}", "--mount", *mount], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs in the database container: {mounted.stderr.strip()}")
    docker("exec", "--user=root", database, "install", "-d", "-o", "postgres", f"{path}/space")

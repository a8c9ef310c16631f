"""The backup image the program builds, and the commands it runs in it, on a real Docker engine.

The backup image is built from the repo's own ``docker/backup/Dockerfile``. Its base, the official
``postgres:15-bookworm``, cannot be pulled (no registry is reachable here), so it stands in as
Debian bookworm's own PostgreSQL 15 packages on a debootstrapped bookworm (see
``tests/docker/images.py``): the same Debian release and PostgreSQL major version, so the same
pg_dump/pg_restore/psql and apt sources the Dockerfile relies on. The database container runs
that stand-in with the environment, password file and network alias the program gives it.

Each test gets its own internal network, database and volumes, all removed afterwards.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from components.backup import (
    BACKUP_USER,
    BACKUPS_MOUNT,
    LOGS_MOUNT,
    SCRATCH,
    STATUS_FILE,
    health_command,
    schedule_command,
)
from components.config import BackupSettings, PitrSettings
from components.container import contract_labels
from components.database import DB_ALIAS
from components.jobs import JobSpec, docker_run_argv
from components.launcher import SECRETS_DIR, launcher_entrypoint
from components.migration import pre_migration_backup_job
from tests.pulumi_harness import in_fresh_loop, value_of
from tests.support.docker import docker, hardened, write_files
from tests.support.docker_env import DATABASE, ROWS, Env, endpoint, sql, start_database

# The dump scheduler on its own; the physical steps have their own tests.
NO_ARCHIVING = PitrSettings(enabled=False)

BACKEND_LOG = "LATEST_LOG.txt"
BACKEND_UID = 10001
LOG_LINE = "2024-05-01T12:00:00Z INFO request handled in 3 ms\n"
BACKUP_NAME = re.compile(rf"^{BACKUPS_MOUNT}/{DATABASE.name}-\d{{8}}T\d{{6}}Z\.dump$")
TIMEOUT_S = 120


def run_backup_job(env: Env, backups: str, password: str) -> subprocess.CompletedProcess[str]:
    """The pre-migration backup exactly as the program runs it: its argv, the secret on stdin."""

    async def job() -> tuple[JobSpec, str]:
        database = endpoint(password)
        spec = pre_migration_backup_job(
            env.stack_context(), database, env.images.backup, BackupSettings()
        )
        return spec, await value_of(database.password)

    spec, secret = in_fresh_loop(job)
    argv = docker_run_argv(spec, env.images.backup, env.network, [backups])
    # pulumi-command runs the joined command line through /bin/sh -c, as here.
    return subprocess.run(
        ["/bin/sh", "-c", shlex.join(argv)],
        input=secret + "\n",
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def in_volume(
    env: Env, volume: str, *command: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A command in a throwaway container of the backup image, the volume at /backups."""
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network=none",
            *([f"--user={user}"] if user else []),
            f"--volume={volume}:{BACKUPS_MOUNT}",
            f"--workdir={BACKUPS_MOUNT}",
            "--entrypoint=",
            env.images.backup,
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def listed(env: Env, volume: str, user: str | None = None) -> list[dict[str, Any]]:
    """`astats_ops list`, by default as the image's own user."""
    result = in_volume(
        env,
        volume,
        "python3",
        "-m",
        "astats_ops",
        "list",
        f"--dest={BACKUPS_MOUNT}",
        "--json",
        user=user,
    )
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def snapshot(env: Env, volume: str) -> str:
    """Every file in the volume with its size, mtime and sha256."""
    result = in_volume(
        env,
        volume,
        "sh",
        "-c",
        "find . -type f -printf '%p %s %T@\\n' | sort && find . -type f -print0 | sort -z "
        "| xargs -0 -r sha256sum",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_backup(env: Env, backups: str) -> str:
    result = run_backup_job(env, backups, env.password)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_pre_migration_backup_job_writes_a_verified_dump(env: Env, tmp_path: Path) -> None:
    start_database(env, tmp_path)
    backups = env.volume("backups")

    result = run_backup_job(env, backups, env.password)

    assert result.returncode == 0, result.stderr
    # The program records stdout as the backup's path and replaces the migration with it.
    assert BACKUP_NAME.match(result.stdout.rstrip("\n")), result.stdout
    assert result.stdout.count("\n") == 1
    path = result.stdout.strip()
    name = Path(path).name
    [row] = listed(env, backups)
    assert (row["path"], row["database"], row["verification"]) == (path, DATABASE.name, "ok")
    files = in_volume(env, backups, "ls", "-A").stdout.split()
    assert sorted(files) == [name, f"{name}.counts.json", f"{name}.sha256"]
    checked = in_volume(env, backups, "sha256sum", "--check", f"{name}.sha256")
    assert checked.returncode == 0 and checked.stdout.strip() == f"{name}: OK", checked.stderr
    toc = in_volume(env, backups, "pg_restore", "--list", name)
    assert toc.returncode == 0, toc.stderr
    assert "TABLE DATA public items" in toc.stdout


def test_backup_job_with_a_wrong_password_fails_in_one_line_and_keeps_old_backups(
    env: Env, tmp_path: Path
) -> None:
    start_database(env, tmp_path)
    backups = env.volume("backups")
    one_backup(env, backups)
    before = snapshot(env, backups)
    # Backup names have one-second resolution: a new second makes the failure pg_dump's own.
    time.sleep(1.1)

    result = run_backup_job(env, backups, "not the password")

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("astats_ops backup: error: pg_dump of database 'astats'")
    assert 'password authentication failed for user "astats"' in lines[0]
    assert "check PGUSER and PGPASSWORD" in lines[0]
    assert result.stdout == ""
    assert snapshot(env, backups) == before


def create_with_secrets(
    env: Env, options: list[str], command: list[str], secrets: dict[str, str]
) -> str:
    """A container started through the launcher, its secrets in a files volume of its own,
    written by the program's files step and mounted read-only."""
    files = env.volume(f"files-{len(env.volumes)}")
    write_files(env.stack, "backup", env.images.backup, files, secrets)
    entrypoint = launcher_entrypoint()
    return env.create(
        f"--network={env.network}",
        *[f"--env={k}={v}" for k, v in sorted(libpq_env().items())],
        f"--volume={files}:{SECRETS_DIR}:ro",
        *options,
        f"--entrypoint={entrypoint[0]}",
        env.images.backup,
        *entrypoint[1:],
        *command,
    )


def libpq_env() -> dict[str, str]:
    # The same variables components/backup.py gives the scheduler.
    return {
        "PGHOST": DB_ALIAS,
        "PGPORT": "5432",
        "PGUSER": DATABASE.user,
        "PGDATABASE": DATABASE.name,
    }


def write_backend_log(env: Env, logs: str, size: int) -> None:
    """A log of whole lines as the backend leaves it: its uid's, group-writable in a directory
    its group may write (its launcher's ASTATS_SHARED_DIR)."""
    script = (
        "import os, sys\n"
        "path, line, size, uid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n"
        "with open(path, 'w') as f:\n"
        "    f.write(line * (size // len(line)))\n"
        "for made, mode in ((os.path.dirname(path), 0o775), (path, 0o664)):\n"
        "    os.chown(made, uid, uid)\n"
        "    os.chmod(made, mode)\n"
    )
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network=none",
            "--user=0:0",
            f"--volume={logs}:{LOGS_MOUNT}",
            "--entrypoint=python3",
            env.images.backup,
            "-c",
            script,
            f"{LOGS_MOUNT}/{BACKEND_LOG}",
            LOG_LINE,
            str(size),
            str(BACKEND_UID),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr


def scheduler_options(settings: BackupSettings) -> list[str]:
    """The scheduler's container options as components/backup.py and container.py set them:
    the image's postgres user in the backend's group, read-only, no capability, its limits."""
    return [
        *hardened(BACKUP_USER, SCRATCH, settings.pids_limit),
        f"--group-add={BACKEND_UID}",
        f"--memory={settings.memory_mb}m",
        f"--memory-swap={settings.memory_mb}m",
        f"--cpus={settings.cpus:g}",
    ]


def read_status(container: str) -> dict[str, Any] | None:
    result = docker("exec", container, "cat", STATUS_FILE, check=False)
    if result.returncode != 0:
        return None
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_scheduler_backs_up_rotates_the_backend_log_and_reports_healthy(
    env: Env, tmp_path: Path
) -> None:
    start_database(env, tmp_path)
    backups, logs = env.volume("backups"), env.volume("logs")
    settings = BackupSettings(
        interval_minutes=5, log_rotate_max_mb=1, log_rotate_keep=2, pitr=NO_ARCHIVING
    )
    log_size = 3 * 1024 * 1024 // 2 // len(LOG_LINE) * len(LOG_LINE)
    write_backend_log(env, logs, log_size)
    options = [
        *scheduler_options(settings),
        *[f"--label={k}={v}" for k, v in sorted(contract_labels(env.stack, "backup").items())],
        f"--volume={backups}:{BACKUPS_MOUNT}",
        f"--volume={logs}:{LOGS_MOUNT}",
    ]
    scheduler = create_with_secrets(
        env,
        options,
        schedule_command(settings, BACKEND_LOG),
        {"PGPASSWORD": env.password},
    )
    docker("start", scheduler)

    deadline = time.monotonic() + TIMEOUT_S
    while (status := read_status(scheduler)) is None or status["last_finished"] is None:
        running = docker("inspect", "--format={{.State.Running}}", scheduler).stdout.strip()
        assert running == "true", docker("logs", scheduler).stderr
        assert time.monotonic() < deadline, f"no finished run; status: {status}"
        time.sleep(0.5)

    assert status["last_result"] == "success", status
    assert status["steps"]["rotate-log"].startswith("rotated"), status
    assert BACKUP_NAME.match(status["last_backup"]), status
    [row] = listed(env, backups, user="0:0")
    assert (row["path"], row["verification"]) == (status["last_backup"], "ok")

    # What Docker's healthcheck runs: an exec in the container, as its user.
    health = docker("exec", scheduler, *health_command(settings)[1:], check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    assert health.stdout.startswith("healthy: last run succeeded")

    stat = docker(
        "exec", scheduler, "sh", "-c", f"cd {LOGS_MOUNT} && stat -c '%n %u %a %s' {BACKEND_LOG}*"
    ).stdout.splitlines()
    # The live log keeps its owner; the rotated copy keeps the log's mode (its owner is the
    # scheduler's, postgres, who wrote it as a member of the backend's group).
    assert stat[0] == f"{BACKEND_LOG} {BACKEND_UID} 664 0"
    assert stat[1] == f"{BACKEND_LOG}.1 999 664 {log_size}"
    assert len(stat) == 2, stat
    assert env.password not in docker("inspect", scheduler).stdout

    # `pulumi destroy`/replacement stops it with SIGTERM: it exits 0 and says so.
    docker("stop", "--time=30", scheduler)
    assert docker("inspect", "--format={{.State.ExitCode}}", scheduler).stdout.strip() == "0"
    stopped = in_volume(env, backups, "cat", STATUS_FILE)
    assert json.loads(stopped.stdout)["state"] == "stopped"


def test_restore_from_the_backup_image_brings_deleted_rows_back(env: Env, tmp_path: Path) -> None:
    database = start_database(env, tmp_path)
    backups = env.volume("backups")
    path = one_backup(env, backups)
    sql(database, "DELETE FROM items WHERE id % 2 = 0")
    sql(database, "CREATE TABLE after_backup (id integer)")
    assert sql(database, "SELECT count(*) FROM items") == str(ROWS // 2)

    restorer = create_with_secrets(
        env,
        [f"--volume={backups}:{BACKUPS_MOUNT}", *hardened(BACKUP_USER, SCRATCH)],
        ["python3", "-m", "astats_ops", "restore", path, "--yes"],
        {"PGPASSWORD": env.password},
    )
    result = subprocess.run(
        ["docker", "start", "--attach", restorer], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"restored {path} into database 'astats' on {DB_ALIAS}:5432 as 'astats'"
    )
    expected = f"{ROWS}|{ROWS * (ROWS + 1) // 2}"
    assert sql(database, "SELECT count(*), sum(id) FROM items") == expected
    assert sql(database, "SELECT to_regclass('public.after_backup') IS NULL") == "t"


def test_backups_taken_by_the_scheduler_are_readable_by_the_image_user(
    env: Env, tmp_path: Path
) -> None:
    start_database(env, tmp_path)
    backups, logs = env.volume("backups"), env.volume("logs")
    scheduler = create_with_secrets(
        env,
        [
            *scheduler_options(BackupSettings()),
            f"--volume={backups}:{BACKUPS_MOUNT}",
            f"--volume={logs}:{LOGS_MOUNT}",
        ],
        [*schedule_command(BackupSettings(pitr=NO_ARCHIVING), BACKEND_LOG), "--once"],
        {"PGPASSWORD": env.password},
    )
    ran = subprocess.run(
        ["docker", "start", "--attach", scheduler], capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr

    rows = listed(env, backups)

    assert [row["verification"] for row in rows] == ["ok"]

"""A throwaway PostgreSQL 15 that archives its WAL with the real pgBackRest, for the PITR tests.

The server's ``archive_command`` is docker/postgres/archive-push.sh (through a wrapper named
``pgbackrest-archive-push``, since pgBackRest's backup insists that the archive command mentions
``pgbackrest``), with the ``PGBACKREST_*`` environment the containers carry, pointed at a
repository, spool and lock directory in the test's own temp dir. astats_ops runs as the
``postgres`` OS user, as in the scheduler container (the same uid as the server).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ops.helpers import REPO_ROOT, schedule_args
from tests.support.ci import unavailable
from tests.support.postgres import (
    OS_USER,
    PostgresCluster,
    postgres_cluster,
    skip_or_fail,
)

SERVER_BIN = "/usr/lib/postgresql/15/bin"
ARCHIVE_PUSH = REPO_ROOT / "docker" / "postgres" / "archive-push.sh"


def require_pgbackrest() -> None:
    skip_or_fail()
    found = shutil.which("pgbackrest")
    if found is None:
        unavailable("pgbackrest not found on PATH; apt-get install pgbackrest (2.45)")
    version = subprocess.run([found, "version"], capture_output=True, text=True, check=False)
    if "pgBackRest 2." not in version.stdout:
        unavailable(f"pgbackrest version printed {version.stdout!r}")


def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class Archiving:
    pg: PostgresCluster
    root: Path

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def dest(self) -> Path:
        """The backups volume."""
        return self.root / "backups"

    @property
    def status_file(self) -> Path:
        return self.dest / ".astats-status.json"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def schedule_args(self, *extra: str) -> list[str | Path]:
        """`schedule` on this cluster's backups volume and status file, archiving on, no dump
        drill."""
        return schedule_args(self.dest, self.status_file, "--no-drill", "--pitr", *extra)

    def pgbackrest_env(self, **overrides: str) -> dict[str, str]:
        env = {
            "PGBACKREST_STANZA": "astats",
            "PGBACKREST_REPO1_PATH": str(self.repo),
            "PGBACKREST_REPO1_RETENTION_FULL": "2",
            "PGBACKREST_PG1_PATH": str(self.pg.data_dir),
            "PGBACKREST_PG1_SOCKET_PATH": str(self.pg.socket_dir),
            "PGBACKREST_PG1_PORT": str(self.pg.port),
            "PGBACKREST_PG1_USER": OS_USER,
            "PGBACKREST_ARCHIVE_ASYNC": "y",
            "PGBACKREST_SPOOL_PATH": str(self.spool),
            "PGBACKREST_LOCK_PATH": str(self.root / "lock"),
            "PGBACKREST_LOG_LEVEL_FILE": "off",
            "PGBACKREST_LOG_LEVEL_CONSOLE": "warn",
            "PGBACKREST_COMPRESS_TYPE": "lz4",
            "PGBACKREST_START_FAST": "y",
            "PGBACKREST_PROCESS_MAX": "2",
        }
        return {**env, **overrides}

    def set_server_env(self, **overrides: str) -> None:
        """What the server's archive_command runs with (read at each push)."""
        env = {**self.pgbackrest_env(**overrides), "PGPASSWORD": self.pg.superuser_password}
        lines = [f"export {key}='{value}'" for key, value in env.items()]
        target = self.root / "server-env.sh"
        target.write_text("\n".join(lines) + "\n")
        chown_postgres(target)

    def env(self, **overrides: str) -> dict[str, str]:
        """The scheduler's environment: libpq as the superuser, pgBackRest's settings."""
        env = self.pg.env(user=OS_USER)
        env["PATH"] = f"{SERVER_BIN}:{env.get('PATH', os.defpath)}"
        env["PYTHONPATH"] = str(REPO_ROOT)
        env.pop("ASTATS_ALERT_WEBHOOK_URL", None)
        return {**env, **self.pgbackrest_env(**overrides)}

    def block_repo(self, blocked: bool = True) -> None:
        """Make the archive's directories unwritable for the server (or writable again)."""
        for path in (self.repo / "archive").rglob("*"):
            if path.is_dir():
                path.chmod(0o555 if blocked else 0o750)

    def sql(self, statement: str) -> str:
        return self.pg.psql(statement, user=OS_USER).strip()

    def switch_wal(self) -> str:
        """Write a little, then close the segment so it is archived now."""
        return self.sql(
            "CREATE TABLE IF NOT EXISTS wal_filler (n int); INSERT INTO wal_filler VALUES (1);"
            "SELECT pg_walfile_name(pg_switch_wal());"
        ).splitlines()[-1]

    def archiver(self) -> dict[str, Any]:
        row: dict[str, Any] = json.loads(self.sql("SELECT row_to_json(a) FROM pg_stat_archiver a;"))
        return row

    def wait_archived(self, segment: str, timeout: float = 60) -> None:
        wait_for(
            lambda: (self.archiver()["last_archived_wal"] or "") >= segment,
            timeout,
            f"segment {segment} archived",
        )

    def wait_failed(self, timeout: float = 60) -> dict[str, Any]:
        """Until the archiver's last failure is newer than its last success."""

        def failing() -> bool:
            row = self.archiver()
            failed, archived = row["last_failed_time"], row["last_archived_time"]
            return failed is not None and (archived is None or failed > archived)

        wait_for(failing, timeout, "archiving to fail")
        return self.archiver()


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    give_up = time.monotonic() + timeout
    while not check():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextlib.contextmanager
def archiving_cluster(archive_timeout_s: int = 0) -> Iterator[Archiving]:
    """A cluster whose WAL goes to a pgBackRest repository in a temp dir of its own (not
    pytest's tmp_path, which the postgres user cannot reach)."""
    require_pgbackrest()
    root = Path(tempfile.mkdtemp(prefix="astats-pitr-"))
    try:
        with _archiving_cluster(root, archive_timeout_s) as archiving:
            yield archiving
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _archiving_cluster(root: Path, archive_timeout_s: int) -> Iterator[Archiving]:
    os.chmod(root, 0o755)
    chown_postgres(root)
    for name in ("repo", "spool", "lock", "backups"):
        (root / name).mkdir(mode=0o750)
        chown_postgres(root / name)
    wrapper = root / "pgbackrest-archive-push"
    wrapper.write_text(
        f"#!/bin/sh\n[ -f {root}/server-env.sh ] || exit 1\n. {root}/server-env.sh\n"
        f'exec {ARCHIVE_PUSH} "$1"\n'
    )
    wrapper.chmod(0o755)
    conf = {
        "archive_mode": "on",
        "archive_command": f"'{wrapper} %p'",
        "archive_timeout": str(archive_timeout_s),
        "wal_level": "replica",
        "max_wal_size": "'32MB'",
        "min_wal_size": "'32MB'",
    }
    with postgres_cluster(extra_conf=conf) as pg:
        archiving = Archiving(pg, root)
        archiving.set_server_env()
        yield archiving


def as_postgres(command: list[str]) -> list[str]:
    """``command`` run as the postgres user (setpriv execs it: signals reach it directly)."""
    if os.geteuid() != 0:
        return command
    entry = pwd.getpwnam(OS_USER)
    return [
        "setpriv",
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--init-groups",
        "--",
        *command,
    ]


def ops_command(*args: str | os.PathLike[str]) -> list[str]:
    return as_postgres([sys.executable, "-m", "astats_ops", *map(str, args)])


def run_ops(
    *args: str | os.PathLike[str], env: Mapping[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``python -m astats_ops ...`` as the scheduler container runs it."""
    return subprocess.run(
        ops_command(*args),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
    )

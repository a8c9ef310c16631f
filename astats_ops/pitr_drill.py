"""``pitr-drill``: prove that the newest physical backup and the archived WAL after it restore.

``pgbackrest restore`` puts the newest backup into a scratch directory on the backups volume
(``<dest>/.astats-pitr-drill``, mode 0700), set to replay every archived segment and end
recovery there; a PostgreSQL server of the scratch copy's own then starts in this container
(``pg_ctl``), listening on a unix socket in a private directory under /tmp only, with
``archive_mode=off`` so it never pushes its new timeline into the repository, trusting only that
socket, and with a small ``shared_buffers`` so it fits beside the scheduler. Once recovery has
ended:

* the restored ``alembic_version`` equals the live database's (when the live one has the table);
* every table of the live database's ``public`` schema exists and reads (``SELECT count(*)``).

``recovered_to`` is the last transaction replayed (``pg_last_xact_replay_timestamp()``), or the
backup's end when no transaction came after it; ``restore_seconds`` runs from the restore's
start to the end of recovery, the time a real restore of this size would take.

The server is stopped and the directory removed whatever happens (a stop request too); what a
killed drill left is removed by the next one. Before the restore the live server is asked to
switch to a new WAL segment (a superuser's right; skipped otherwise) and the drill waits, up to
``wait_archive_s``, for that segment to reach the archive, so the latest changes are in the drill.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astats_ops.errors import OpsError, one_line
from astats_ops.pgbackrest import PhysicalBackup, isoformat, read_info, run_pgbackrest
from astats_ops.pgenv import PgTarget, connection_hint, find_tool
from astats_ops.proc import check_cancelled, spawn
from astats_ops.scratch import ident
from astats_ops.snapshot import PsqlSession, psql_session

SCRATCH_DIR = ".astats-pitr-drill"
START_TIMEOUT_S = 600
TABLES_SQL = """SELECT coalesce(json_agg(tablename::text ORDER BY tablename), '[]')
FROM pg_tables WHERE schemaname = 'public';"""
ALEMBIC_SQL = """SELECT coalesce(json_agg(version_num::text ORDER BY version_num::text), '[]')
FROM public.alembic_version;"""


@dataclass(frozen=True)
class PitrDrillResult:
    backup: str | None
    recovered_to: str | None
    ok: bool
    finished_at: str
    restore_seconds: float
    summary: str
    error: str | None

    def as_status(self) -> dict[str, Any]:
        return asdict(self)


def run_pitr_drill(
    dest: Path,
    *,
    env: Mapping[str, str] | None = None,
    wait_archive_s: float = 120,
) -> PitrDrillResult:
    """Drill the newest physical backup; a failure is returned, not raised."""
    env = dict(os.environ if env is None else env)
    started = time.monotonic()
    backup: PhysicalBackup | None = None
    try:
        newest = read_info(env).newest
        if newest is None:
            raise OpsError("no physical backup in the repository to drill; take one first")
        backup = newest
        recovered_to, seconds = _drill(dest, backup, env, wait_archive_s)
    except OpsError as exc:
        seconds = round(time.monotonic() - started, 1)
        label = backup.label if backup else None
        error = str(exc)
        return PitrDrillResult(
            label, None, False, _now(), seconds, f"physical drill failed: {error}", error
        )
    summary = f"physical drill ok: {backup.label} recovered to {recovered_to}, {seconds:.1f} s"
    return PitrDrillResult(backup.label, recovered_to, True, _now(), seconds, summary, None)


def _now() -> str:
    return isoformat(datetime.now(UTC))


@dataclass(frozen=True)
class LiveState:
    tables: list[str]
    alembic: list[str] | None


def _drill(
    dest: Path, backup: PhysicalBackup, env: dict[str, str], wait_archive_s: float
) -> tuple[str, float]:
    psql = find_tool("psql", env)
    pg_ctl = find_tool("pg_ctl", env)
    live = _live_state(psql, env, wait_archive_s)
    scratch = dest / SCRATCH_DIR
    remove_scratch(scratch, pg_ctl, env)
    scratch.mkdir(mode=0o700)
    scratch.chmod(0o700)
    try:
        with tempfile.TemporaryDirectory(prefix="astats-pitr-drill-", dir="/tmp") as sockets:
            data = scratch / "data"
            data.mkdir(mode=0o700)
            started = time.monotonic()
            run_pgbackrest(
                [
                    "restore",
                    f"--pg1-path={data}",
                    f"--set={backup.label}",
                    "--type=default",
                    "--archive-mode=off",
                    # A corrupt file stays corrupt: fail at once instead of retrying it.
                    "--job-retry=0",
                ],
                env,
            )
            with _server(pg_ctl, scratch, Path(sockets), env) as server_env:
                _wait_for_promotion(psql, server_env, scratch, PgTarget.from_env(env).database)
                seconds = round(time.monotonic() - started, 1)
                with psql_session(psql, server_env, PgTarget.from_env(env).database) as session:
                    _check(session, live, backup)
                    replayed = _request(session, "SELECT pg_last_xact_replay_timestamp();")
    finally:
        remove_scratch(scratch, pg_ctl, env)
    recovered_to = isoformat(datetime.fromisoformat(replayed)) if replayed else None
    return recovered_to or isoformat(backup.stopped_at), seconds


def _live_state(psql: str, env: Mapping[str, str], wait_archive_s: float) -> LiveState:
    """The live database's tables and migration, after its current WAL reached the archive."""
    database = PgTarget.from_env(env).database
    with psql_session(psql, env, database) as session:
        line = session.request(TABLES_SQL)
        if line is None:
            text = session.error_text()
            raise OpsError(f"reading the live database failed: {text}; {connection_hint(text)}")
        tables: list[str] = json.loads(line)
        alembic = _alembic(session, "the live database")
    _archive_current_wal(psql, env, database, wait_archive_s)
    return LiveState(tables, alembic)


def _alembic(session: PsqlSession, where: str) -> list[str] | None:
    """The alembic_version rows, None when there is no such table."""
    exists = session.request("SELECT to_regclass('public.alembic_version') IS NOT NULL;")
    versions = session.request(ALEMBIC_SQL) if exists == "t" else "null"
    if exists is None or versions is None:
        raise OpsError(f"reading alembic_version in {where} failed: {session.error_text()}")
    found: list[str] | None = json.loads(versions)
    return found


def _archive_current_wal(
    psql: str, env: Mapping[str, str], database: str, wait_archive_s: float
) -> None:
    with psql_session(psql, env, database, stop_on_error=False) as session:
        segment = session.request("SELECT pg_walfile_name(pg_switch_wal());")
        if segment is None or not segment.strip():
            return
        give_up = time.monotonic() + wait_archive_s
        while time.monotonic() < give_up:
            archived = session.request(
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver;"
            )
            if archived is not None and archived[8:] >= segment[8:] and archived[:8] == segment[:8]:
                return
            check_cancelled()
            time.sleep(0.2)


def remove_scratch(scratch: Path, pg_ctl: str, env: Mapping[str, str]) -> None:
    """Stop a scratch server still running there (a killed drill's) and remove the directory."""
    data = scratch / "data"
    if (data / "postmaster.pid").exists():
        _pg_ctl_stop(pg_ctl, data, env)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(scratch)


def _pg_ctl_stop(pg_ctl: str, data: Path, env: Mapping[str, str]) -> None:
    with spawn(
        [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], env, cleanup=True
    ) as tool:
        tool.proc.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _server(
    pg_ctl: str, scratch: Path, sockets: Path, env: Mapping[str, str]
) -> Iterator[dict[str, str]]:
    """The scratch server, running while the block runs; yields the libpq env to reach it."""
    data = scratch / "data"
    hba = scratch / "pg_hba.conf"
    hba.write_text("local all all trust\n", encoding="utf-8")
    port = _free_port()
    options = {
        "port": str(port),
        "listen_addresses": "",
        "unix_socket_directories": str(sockets),
        "hba_file": str(hba),
        "archive_mode": "off",
        "shared_buffers": "32MB",
        "logging_collector": "off",
        "ssl": "off",
        "cluster_name": "astats-pitr-drill",
    }
    argv = [item for key, value in options.items() for item in ("-c", f"{key}={value}")]
    # The restore_command reads WAL straight from the repository: no async queue to share.
    server_env = {**env, "PGBACKREST_ARCHIVE_ASYNC": "n"}
    log = scratch / "server.log"
    command = [pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", str(START_TIMEOUT_S)]
    try:
        with spawn([*command, "-o", shlex.join(argv), "start"], server_env) as tool:
            result = tool.result()
        check_cancelled()
        if not result.ok:
            raise OpsError(f"the restored copy did not start: {server_log_error(log)}")
        client_env = {
            key: value for key, value in env.items() if not key.startswith(("PGSERVICE", "PGSSL"))
        }
        client_env.update(PGHOST=str(sockets), PGPORT=str(port), PGPASSFILE=os.devnull)
        yield client_env
    finally:
        if (data / "postmaster.pid").exists():
            _pg_ctl_stop(pg_ctl, data, env)


def _wait_for_promotion(psql: str, env: Mapping[str, str], scratch: Path, database: str) -> None:
    """Recovery replays every archived segment, then the copy becomes a primary."""
    give_up = time.monotonic() + START_TIMEOUT_S
    with psql_session(psql, env, database, stop_on_error=False) as session:
        while time.monotonic() < give_up:
            state = session.request("SELECT pg_is_in_recovery();")
            if state == "f":
                return
            if state is None:
                break
            check_cancelled()
            time.sleep(0.2)
    raise OpsError(
        f"the restored copy did not finish recovery: {server_log_error(scratch / 'server.log')}"
    )


def server_log_error(log: Path) -> str:
    """The scratch server's FATAL/PANIC lines (else its last line), as one line."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"no server log ({exc.strerror or exc})"
    serious = [line for line in lines if " FATAL: " in line or " PANIC: " in line]
    return one_line("\n".join(serious[-3:] or lines[-1:])) or "the server log is empty"


def _request(session: PsqlSession, sql: str) -> str | None:
    line = session.request(sql)
    if line is None:
        raise OpsError(f"reading the restored copy failed: {session.error_text()}")
    return line or None


def _check(session: PsqlSession, live: LiveState, backup: PhysicalBackup) -> None:
    what = f"drill of {backup.label}"
    if live.alembic is not None:
        versions = _alembic(session, "the restored copy")
        if versions != live.alembic:
            raise OpsError(
                f"{what}: restored alembic_version {versions} differs from the live "
                f"database's {live.alembic}"
            )
    present = json.loads(_request(session, TABLES_SQL) or "[]")
    missing = sorted(set(live.tables) - set(present))
    if missing:
        raise OpsError(f"{what}: tables of the live database missing after restore: {missing[:5]}")
    for table in live.tables:
        if session.request(f"SELECT count(*) FROM public.{ident(table)};") is None:
            raise OpsError(f"{what}: reading table public.{table} failed: {session.error_text()}")

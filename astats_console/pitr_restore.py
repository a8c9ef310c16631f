"""``astats restore --to TIME | --latest``: a point-in-time restore that never overwrites the
live data volume. Each step is printed with its time.

1. read the repository (pgBackRest, in a throwaway container, the repository read-only) and
   refuse a target it cannot reach (in the future, or before the oldest backup);
2. with ``--latest`` and the database running, have it archive its current WAL first;
3. restore into a **new** volume, start a scratch server on it (no network, archiving off so it
   never pushes a timeline into the repository) and wait until it reaches the target;
4. check it: the restored ``alembic_version``, every table readable, the operator's query;
5. (``--dry-run`` stops here and removes the new volume) confirm, stop the backend, and switch
   the stack to the new volume through the engine (astats_console/pitr_switch.py: the config's
   ``database.restoredVolume`` and ``pulumi up``), then start the backend again.

Up to the switch nothing of the running stack is touched, and a failure removes only what
this restore made. The old volume is kept, and named in the output.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from docker.client import DockerClient
from docker.errors import DockerException, NotFound
from docker.models.containers import Container
from docker.types import Mount
from rich.console import Console

from astats_console import pitr_switch
from astats_console.engine import ExecResult
from astats_console.errors import ConsoleError, one_line
from astats_console.pitr_repo import (
    PGDATA,
    REPOSITORY_MOUNT,
    SERVER_USER,
    TOOL_SERVICE,
    Repository,
    find_repository,
    repository_info,
    run_tool,
)
from astats_console.restore import Steps
from astats_console.stack import Stack

SOCKET_DIR = "/var/run/postgresql"
RECOVERY_BUDGET_S = 3600.0
POLL_S = 0.5


@dataclass(frozen=True)
class PitrRequest:
    target: datetime | None
    """None: the end of the archive (``--latest``)."""
    yes: bool = False
    check_sql: str | None = None
    dry_run: bool = False
    recovery_budget_s: float = RECOVERY_BUDGET_S


def volume_name(stack: str, now: datetime) -> str:
    return f"astats-{stack}-pgdata-{now.strftime('%Y%m%dT%H%M%SZ')}"


def restore_argv(request: PitrRequest) -> list[str]:
    """pgBackRest's restore: the newest backup that ends before the target, then WAL up to
    it; the server promotes itself there (a new timeline)."""
    argv = ["pgbackrest", "restore"]
    if request.target is not None:
        stamp = request.target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        argv += ["--type=time", f"--target={stamp}", "--target-action=promote"]
    return argv


def check_target(request: PitrRequest, earliest: datetime | None, now: datetime) -> None:
    """Refuse a target the repository cannot reach, before anything is made."""
    if earliest is None:
        raise ConsoleError(
            "the repository has no physical backup yet, so there is nothing to restore from; "
            "nothing was changed (the scheduler takes the first one: see astats backups)"
        )
    target = request.target
    if target is None:
        return
    if target > now:
        raise ConsoleError(f"--to {target.isoformat()} is in the future; nothing was changed")
    if target < earliest:
        raise ConsoleError(
            f"--to {target.isoformat()} is before the oldest backup, which ends at "
            f"{earliest.isoformat(timespec='seconds')}: the earliest point to restore to; "
            "nothing was changed"
        )


def check_sql_passes(output: str) -> bool:
    """The operator's query passes when it answers a row whose first value is not false."""
    lines = [line for line in output.splitlines() if line.strip()]
    return bool(lines) and lines[0].split("|")[0].strip() not in ("f", "false", "0")


class ScratchServer:
    """A server on the new volume, reachable only through `docker exec`."""

    def __init__(self, client: DockerClient, repo: Repository, volume: str) -> None:
        self.repo = repo
        try:
            self.container: Container = client.containers.run(
                repo.image,
                ["postgres", "-c", "archive_mode=off", "-c", "listen_addresses="],
                user=SERVER_USER,
                environment=repo.tool_env(),
                mounts=[
                    Mount(PGDATA, volume, type="volume"),
                    Mount(REPOSITORY_MOUNT, repo.volume, type="volume", read_only=True),
                ],
                tmpfs={SOCKET_DIR: "rw,size=1m", "/tmp": "rw,size=64m"},
                network_mode="none",
                read_only=True,
                shm_size="256m",
                labels={"astats.stack": repo.stack, "astats.service": TOOL_SERVICE},
                name=f"astats-{repo.stack}-restore-{uuid.uuid4().hex[:6]}",
                detach=True,
            )
        except DockerException as exc:
            raise ConsoleError(f"the scratch server could not start: {one_line(str(exc))}") from exc

    def psql(self, sql: str, database: str | None = None) -> ExecResult:
        argv = ["psql", "-h", SOCKET_DIR, "-U", self.repo.db_user, "-d", database or "postgres"]
        argv += ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]
        code, (out, err) = self.container.exec_run(argv, user=SERVER_USER, demux=True)
        return ExecResult(code or 0, (out or b"").decode(), (err or b"").decode())

    def last_words(self) -> str:
        lines = self.container.logs(tail=40).decode(errors="replace").splitlines()
        fatal = [line for line in lines if "FATAL" in line or "ERROR" in line]
        return one_line((fatal or lines or ["no output"])[-1])

    def wait_promoted(self, budget_s: float) -> None:
        """Until recovery has reached its target and the server accepts writes."""
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status != "running":
                raise ConsoleError(f"the restored server stopped: {self.last_words()}")
            answer = self.psql("SELECT pg_is_in_recovery()")
            if answer.ok and answer.stdout.strip() == "f":
                return
            time.sleep(POLL_S)
        raise ConsoleError(f"recovery did not finish within {budget_s:.0f} s")

    def stop(self) -> None:
        """A clean shutdown (a checkpoint), so the real server starts without recovery."""
        self.container.stop(timeout=120)
        self.container.reload()
        code = (self.container.attrs.get("State") or {}).get("ExitCode")
        if code not in (0, None):
            raise ConsoleError(
                f"the restored server did not shut down cleanly: {self.last_words()}"
            )

    def remove(self) -> None:
        with contextlib.suppress(NotFound):
            self.container.remove(force=True)


def run_checks(server: ScratchServer, repo: Repository, check_sql: str | None) -> list[str]:
    """The restored database's facts; raises on the first failed check."""
    facts = []
    db = repo.db_name
    version = server.psql("SELECT version_num FROM alembic_version", db)
    if not version.ok:
        raise ConsoleError(f"check failed: alembic_version cannot be read: {version.error_text()}")
    heads = version.stdout.split()
    if len(heads) != 1:
        raise ConsoleError(f"check failed: alembic_version holds {len(heads)} rows, not one")
    facts.append(f"alembic_version {heads[0]}")
    tables = server.psql(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        db,
    )
    if not tables.ok:
        raise ConsoleError(f"check failed: tables cannot be listed: {tables.error_text()}")
    names = tables.stdout.split()
    counts = server.psql(
        " UNION ALL ".join(f"SELECT count(*) FROM {name}" for name in names) or "SELECT 0", db
    )
    if not counts.ok:
        raise ConsoleError(f"check failed: a table cannot be read: {counts.error_text()}")
    rows = sum(int(n) for n in counts.stdout.split())
    facts.append(f"{len(names)} tables readable, {rows} rows")
    if check_sql:
        answer = server.psql(check_sql, db)
        if not answer.ok:
            raise ConsoleError(f"check failed: your query: {answer.error_text()}")
        if not check_sql_passes(answer.stdout):
            first = one_line(answer.stdout) or "no row"
            raise ConsoleError(f"check failed: your query answered {first!r}")
        facts.append(f"your query: {one_line(answer.stdout)}")
    return facts


def mark_timeline_history(client: DockerClient, repo: Repository, volume: str) -> None:
    """The scratch server promoted with archiving off, so the new timeline's history file has
    no `.ready`: mark it, and the real server archives it first thing. Without it a later
    restore to "latest" would follow the old timeline."""
    script = (
        'cd "$PGDATA/pg_wal" && f=$(ls -1 *.history 2>/dev/null | sort | tail -n 1) && '
        '[ -n "$f" ] && [ ! -e "archive_status/$f.done" ] && touch "archive_status/$f.ready"; true'
    )
    result = run_tool(client, repo, ["sh", "-c", script], data_volume=volume, what="marking WAL")
    if not result.ok:
        raise ConsoleError(f"marking the new timeline failed: {result.error_text()}")


def ask_on_tty(summary: str, database: str) -> bool:
    if not sys.stdin.isatty():
        return False
    sys.stderr.write(f"{summary}\nType {database!r} to switch: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip() == database


def run_pitr_restore(
    stack: Stack,
    client: DockerClient,
    request: PitrRequest,
    console: Console,
    confirm: Callable[[str, str], bool] = ask_on_tty,
    switcher: Callable[[Stack, str, Steps], str] | None = None,
) -> int:
    steps = Steps(console)
    if not (request.yes or request.dry_run or sys.stdin.isatty()):
        raise ConsoleError(
            "refusing to restore without confirmation: stdin is not a TTY, pass --yes; "
            "nothing was changed"
        )
    repo = find_repository(client, stack)
    info = repository_info(client, repo)
    now = datetime.now(UTC)
    earliest = info.earliest_target
    check_target(request, earliest, now)
    steps.say(
        f"repository: {len(info.backups)} backup{'' if len(info.backups) == 1 else 's'}, "
        "restorable from "
        f"{earliest.isoformat(timespec='seconds') if earliest else '-'}"
        f", WAL archived up to {info.archive_max or '-'}"
    )
    live = [c for c in stack.containers("db", running=True)]
    if request.target is None and live:
        steps.say("asking the running database to archive its current WAL (pgbackrest check)")
        code, output = live[0].exec_run(["pgbackrest", "check"], user=SERVER_USER)
        if code != 0:
            steps.say(
                "the database could not archive its current WAL: "
                f"{one_line(output.decode(errors='replace'))}; restoring what is archived",
                style="yellow",
            )
    volume = volume_name(stack.name, now)
    what = request.target.isoformat(timespec="seconds") if request.target else "the latest WAL"
    client.volumes.create(volume, labels={"astats.stack": stack.name, "astats.service": "db"})
    made = True
    server: ScratchServer | None = None
    try:
        steps.say(f"restoring into the new volume {volume} (to {what})")
        result = run_tool(client, repo, restore_argv(request), data_volume=volume, what="restore")
        if not result.ok:
            raise ConsoleError(f"pgbackrest restore failed: {result.error_text()}")
        steps.say("starting a scratch server on it (no network, archiving off)")
        server = ScratchServer(client, repo, volume)
        server.wait_promoted(request.recovery_budget_s)
        steps.say("recovery reached its target")
        for fact in run_checks(server, repo, request.check_sql):
            steps.say(f"check ok: {fact}")
        server.stop()
        server.remove()
        server = None
        mark_timeline_history(client, repo, volume)
        if request.dry_run:
            steps.say("dry run: the restore works; removing the new volume, nothing was switched")
            return 0
        summary = (
            f"Switch stack {stack.name!r} to {volume} (restored to {what})? The backend stops "
            "for the switch; writes made since are not in it."
        )
        if not request.yes and not confirm(summary, repo.db_name):
            raise ConsoleError("switch not confirmed; the running stack is as it was")
        switch = switcher or pitr_switch.switch_volume
        try:
            old = switch(stack, volume, steps)
        except pitr_switch.SwitchedUnhealthyError:
            made = False
            raise
        made = False
        steps.say(f"done: the database runs on {volume}; the previous volume {old} is kept")
        return 0
    except ConsoleError as exc:
        steps.say(str(exc), style="bold red")
        return 1
    finally:
        if server is not None:
            server.remove()
        if made:
            try:
                client.volumes.get(volume).remove(force=True)
            except DockerException:
                steps.say(f"could not remove the new volume {volume}; remove it by hand")

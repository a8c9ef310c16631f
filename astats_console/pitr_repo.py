"""pgBackRest's repository as the console sees it: which volume, which image, which settings,
and one-off containers that read it (never the running database's).

The database and the scheduler carry the same `PGBACKREST_*` environment (components/pitr.py);
the console takes it from them, keeps only the local repository (repo1: the S3 store's keys are
the containers' secrets, not the console's), and runs pgBackRest in throwaway containers of the
database's image with the repository volume mounted read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from docker.client import DockerClient
from docker.errors import DockerException, ImageNotFound
from docker.models.containers import Container
from docker.types import Mount

from astats_console.engine import ExecResult
from astats_console.errors import ConsoleError, one_line
from astats_console.stack import Stack
from astats_ops.errors import OpsError
from astats_ops.pgbackrest import StanzaInfo, parse_info

REPOSITORY_MOUNT = "/var/lib/pgbackrest"
PGDATA = "/var/lib/postgresql/data"
SERVER_USER = "postgres"
ENV_PREFIX = "PGBACKREST_"
TOOL_SERVICE = "pitr-restore"
"""The `astats.service` label of the console's throwaway containers."""


def parse_time(text: str) -> datetime:
    """An operator's restore target: ISO 8601; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ConsoleError(
            f"--to {text!r} is not a time: give ISO 8601, e.g. 2026-12-03T12:00:00Z "
            "(UTC unless it names a zone)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Repository:
    """Where a stack's archive is and how to run pgBackRest on it."""

    stack: str
    volume: str
    image: str
    env: dict[str, str]
    db_user: str
    db_name: str

    def tool_env(self) -> dict[str, str]:
        """The repository's settings for reading it here: repo1 only, no spool, no async."""
        keep = {
            k: v
            for k, v in self.env.items()
            if not k.startswith("PGBACKREST_REPO2_")
            and k not in ("PGBACKREST_CONFIG", "PGBACKREST_ARCHIVE_ASYNC", "PGBACKREST_SPOOL_PATH")
        }
        return keep | {"PGBACKREST_REPO": "1", "PGDATA": PGDATA}


def _env_of(container: Container) -> dict[str, str]:
    pairs = (str(e).partition("=") for e in (container.attrs.get("Config") or {}).get("Env") or [])
    return {name: value for name, _, value in pairs}


def find_repository(client: DockerClient, stack: Stack) -> Repository:
    """The stack's repository, from its scheduler (or database) container's settings."""
    holders = [c for service in ("backup", "db") for c in stack.containers(service)]
    for container in holders:
        env = _env_of(container)
        if "PGBACKREST_STANZA" not in env:
            continue
        mounts = container.attrs.get("Mounts") or []
        volume = next(
            (m.get("Name") for m in mounts if m.get("Destination") == REPOSITORY_MOUNT), None
        )
        if not volume:
            continue
        image = f"astats-{stack.name}-database:latest"
        try:
            client.images.get(image)
        except ImageNotFound:
            if service_image(container) is None:
                raise ConsoleError(
                    f"the database image {image} is not on this engine; run pulumi up"
                ) from None
            image = service_image(container) or image
        except DockerException as exc:
            raise ConsoleError(f"cannot read the database image: {one_line(str(exc))}") from exc
        return Repository(
            stack=stack.name,
            volume=str(volume),
            image=image,
            env={k: v for k, v in env.items() if k.startswith(ENV_PREFIX)},
            db_user=env.get("PGBACKREST_PG1_USER") or env.get("PGUSER") or "postgres",
            db_name=env.get("PGDATABASE") or env.get("POSTGRES_DB") or "postgres",
        )
    return _without_containers(client, stack)


# What components/pitr.py sets that a restore needs, for when no container is left to read
# it from (the database and the scheduler lost with the data volume).
BASE_ENV = {
    "PGBACKREST_STANZA": "astats",
    "PGBACKREST_REPO1_PATH": f"{REPOSITORY_MOUNT}/repo",
    "PGBACKREST_PG1_PATH": PGDATA,
    "PGBACKREST_LOCK_PATH": "/tmp/pgbackrest",
    "PGBACKREST_LOG_LEVEL_FILE": "off",
    "PGBACKREST_LOG_LEVEL_CONSOLE": "warn",
}


def _without_containers(client: DockerClient, stack: Stack) -> Repository:
    """The repository by the names the program gives it, and the role and database from the
    stack's config (the defaults when it names none)."""
    volume, image = f"astats-{stack.name}-pgbackrest", f"astats-{stack.name}-database:latest"
    try:
        client.volumes.get(volume)
        client.images.get(image)
    except DockerException:
        raise ConsoleError(
            f"stack {stack.name!r} has no continuous archiving here (no {volume} volume and "
            f"{image} image): restore a dump instead (astats restore --latest-dump), or turn "
            "on backup.pitr and run pulumi up"
        ) from None
    from astats_console.pitr_switch import database_settings

    settings = database_settings(stack.name)
    user = str(settings.get("user") or "astats")
    return Repository(
        stack=stack.name,
        volume=volume,
        image=image,
        env=BASE_ENV | {"PGBACKREST_PG1_USER": user},
        db_user=user,
        db_name=str(settings.get("name") or "astats"),
    )


def service_image(container: Container) -> str | None:
    image = container.attrs.get("Image")
    return str(image) if image else None


def run_tool(
    client: DockerClient,
    repo: Repository,
    argv: list[str],
    *,
    data_volume: str | None = None,
    what: str,
) -> ExecResult:
    """`argv` in a throwaway container of the database image: the repository read-only, and
    `data_volume` (a new volume being restored into) read-write at PGDATA."""
    mounts = [Mount(REPOSITORY_MOUNT, repo.volume, type="volume", read_only=True)]
    if data_volume is not None:
        mounts.append(Mount(PGDATA, data_volume, type="volume"))
    try:
        container = client.containers.run(
            repo.image,
            argv,
            entrypoint=[],
            user=SERVER_USER,
            environment=repo.tool_env(),
            mounts=mounts,
            tmpfs={"/tmp": "rw,size=64m"},
            network_mode="none",
            read_only=True,
            labels={"astats.stack": repo.stack, "astats.service": TOOL_SERVICE},
            detach=True,
        )
    except DockerException as exc:
        raise ConsoleError(f"{what} could not start: {one_line(str(exc))}") from exc
    try:
        code = int(container.wait().get("StatusCode", 1))
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
        stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return ExecResult(code, stdout, stderr)


def repository_info(client: DockerClient, repo: Repository) -> StanzaInfo:
    """`pgbackrest info`, read as the scheduler reads it (astats_ops.pgbackrest)."""
    result = run_tool(client, repo, ["pgbackrest", "info", "--output=json"], what="pgbackrest info")
    if not result.ok:
        raise ConsoleError(f"pgbackrest info failed: {result.error_text()}; nothing was changed")
    try:
        return parse_info(result.stdout)
    except OpsError as exc:
        raise ConsoleError(f"{exc}; nothing was changed") from None

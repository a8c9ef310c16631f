"""A stack of labelled containers made the way the program makes them, for the console's tests.

Each one gets its own stack label (``t-<uuid>``), network and volumes, so parallel tests never
see each other's containers; ``close`` removes all of it. The services run as the components
configure them: contract labels, a restart policy, memory limits, healthchecks, the launcher with
secrets as files, the database's password file, the scheduler's command and health check.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from docker.client import DockerClient
from docker.errors import DockerException, NotFound
from docker.models.containers import Container

from components.backup import health_command, schedule_command
from components.config import BackupSettings, PitrSettings
from components.container import contract_labels
from components.database import PASSWORD_FILE, PGDATA
from components.launcher import SECRETS_DIR, launcher_entrypoint
from components.pitr import REPOSITORY_MOUNT, SOCKET_DIR, pgbackrest_env, server_options

SECOND = 1_000_000_000
DB_USER = "astats"
DB_NAME = "astats"


def health(test: list[str], interval_s: float = 1, retries: int = 2) -> dict[str, Any]:
    return {
        "test": test,
        "interval": int(interval_s * SECOND),
        "timeout": 5 * SECOND,
        "retries": retries,
        "start_period": 0,
    }


@dataclass
class MiniStack:
    client: DockerClient
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    containers: list[Container] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    network: str = ""
    password: str = field(default_factory=lambda: f"pw-{uuid.uuid4().hex} $HOME'\"")

    def __post_init__(self) -> None:
        self.network = f"astats-{self.name}-net"
        self.client.networks.create(self.network, internal=True, labels={"astats.stack": self.name})

    @property
    def name(self) -> str:
        return f"t-{self.suffix}"

    def volume(self, role: str, service: str) -> str:
        name = f"astats-{self.name}-{role}"
        self.client.volumes.create(name, labels=contract_labels(self.name, service))
        self.volumes.append(name)
        return name

    def create(
        self,
        service: str,
        image: str,
        command: list[str],
        *,
        entrypoint: list[str] | None = None,
        environment: dict[str, str] | None = None,
        uploads: dict[str, tuple[str, int]] | None = None,
        healthcheck: dict[str, Any] | None = None,
        memory_mb: int = 256,
        restart: str = "unless-stopped",
        volumes: dict[str, str] | None = None,
        alias: str | None = None,
        user: str | None = None,
        labels: dict[str, str] | None = None,
        start: bool = True,
        init: bool | None = None,
    ) -> Container:
        endpoint = self.client.api.create_endpoint_config(aliases=[alias] if alias else None)
        container = self.client.containers.create(
            image,
            command,
            name=f"astats-{self.name}-{service}-{uuid.uuid4().hex[:6]}",
            entrypoint=entrypoint,
            environment=environment,
            labels={**contract_labels(self.name, service), **(labels or {})},
            healthcheck=healthcheck,
            mem_limit=f"{memory_mb}m",
            memswap_limit=f"{memory_mb}m",
            restart_policy={"Name": restart} if restart != "no" else None,
            volumes={v: {"bind": path, "mode": "rw"} for v, path in (volumes or {}).items()},
            network=self.network,
            networking_config={self.network: endpoint},
            user=user,
            init=init,
            log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}},
        )
        self.containers.append(container)
        if uploads:
            self.upload(container, uploads)
        if start:
            container.start()
        return container

    def launched(
        self, service: str, image: str, command: list[str], secrets: dict[str, str], **kw: Any
    ) -> Container:
        """Through the launcher (components/launcher.py), its secrets as files where the
        program's files volume puts them."""
        uploads = {f"{SECRETS_DIR}/{k}": (v, 0o444) for k, v in secrets.items()}
        return self.create(
            service, image, command, entrypoint=launcher_entrypoint(), uploads=uploads, **kw
        )

    def database(self, image: str, *, command: list[str] | None = None, **extra: Any) -> Container:
        """The database as components/database.py runs it; `extra` adds to what
        archiving_database needs (environment, volumes, user, init)."""
        environment = {
            "POSTGRES_DB": DB_NAME,
            "POSTGRES_USER": DB_USER,
            "POSTGRES_PASSWORD_FILE": PASSWORD_FILE,
            "PGDATA": PGDATA,
            **extra.pop("environment", {}),
        }
        volumes = {self.volume("pgdata", "db"): PGDATA, **extra.pop("volumes", {})}
        return self.create(
            "db",
            image,
            command or ["postgres"],
            environment=environment,
            uploads={PASSWORD_FILE: (self.password, 0o444)},
            healthcheck=health(
                ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", DB_USER, "-d", DB_NAME]
            ),
            volumes=volumes,
            alias="db",
            memory_mb=512,
            **extra,
        )

    def archiving_database(self, database_image: str, archive_timeout_s: int = 10) -> Container:
        """The database as components/database.py runs it with backup.pitr on: WAL archived
        through pgBackRest into the stack's repository volume."""
        settings = BackupSettings(pitr=PitrSettings(archive_timeout_s=archive_timeout_s))
        return self.database(
            database_image,
            command=server_options(settings),
            environment=pgbackrest_env(settings, DB_USER),
            volumes={
                self.volume("pgbackrest", "db"): REPOSITORY_MOUNT,
                self.volume("pgsocket", "db"): SOCKET_DIR,
            },
            user="postgres",
            init=True,
        )

    def scheduler(self, backup_image: str, interval_minutes: int = 600) -> Container:
        """The backup scheduler as components/backup.py runs it (no drill: the stand-in's role
        may create databases, but a drill per test costs time the tests do not need)."""
        settings = BackupSettings(
            interval_minutes=interval_minutes, drills=False, pitr=PitrSettings(enabled=False)
        )
        return self.launched(
            "backup",
            backup_image,
            schedule_command(settings, "LATEST_LOG.txt"),
            {"PGPASSWORD": self.password},
            environment={
                "PGHOST": "db",
                "PGPORT": "5432",
                "PGUSER": DB_USER,
                "PGDATABASE": DB_NAME,
            },
            healthcheck=health(health_command(settings)),
            volumes={
                self.volume("backups", "backup"): "/backups",
                self.volume("backend-logs", "backend"): "/backend-logs",
            },
            user="0:0",
        )

    def wait_for(self, container: Container, health_status: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            container.reload()
            state = container.attrs["State"]
            if (state.get("Health") or {}).get("Status") == health_status:
                return
            time.sleep(0.2)
        raise AssertionError(
            f"{container.name} never became {health_status}: {container.attrs['State']}"
        )

    def wait_for_log(self, container: Container, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in container.logs().decode(errors="replace"):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in the logs of {container.name}")
            time.sleep(0.2)

    def upload(self, container: Container, files: dict[str, tuple[str, int]]) -> None:
        container.put_archive("/", _tar(files))

    def close(self) -> None:
        for container in reversed(self.containers):
            with contextlib.suppress(NotFound):
                container.remove(force=True, v=True)
        labelled = self.client.volumes.list(filters={"label": f"astats.stack={self.name}"})
        for volume in [*self.volumes, *(v.name for v in labelled)]:
            with contextlib.suppress(DockerException):
                self.client.volumes.get(volume).remove(force=True)
        with contextlib.suppress(DockerException):
            self.client.networks.get(self.network).remove()


def _tar(files: dict[str, tuple[str, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, (content, mode) in files.items():
            data = content.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()

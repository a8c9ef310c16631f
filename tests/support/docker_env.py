"""What the Docker tests share: the test images, one test's network, database and volumes."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pytest

from components.config import DatabaseSettings, LoggingSettings
from components.container import NetworkNames, StackContext, VolumeNames
from components.database import DB_ALIAS, PASSWORD_FILE, PGDATA, pg_isready_test
from components.endpoint import DatabaseEndpoint
from tests.support.docker import docker, upload

DATABASE = DatabaseSettings()
ROWS = 200


@dataclass(frozen=True)
class Images:
    postgres: str
    backup: str
    database: str = ""
    """The repo's database image (pgBackRest added) on the stand-in."""


@dataclass(frozen=True)
class BackendImages:
    python: str
    backend: str


@dataclass
class Env:
    """One test's network, database and volumes; `close` removes what it created."""

    images: Images
    network: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    password: str = field(default_factory=lambda: f"pw {uuid.uuid4().hex} with $HOME'\"")
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def stack(self) -> str:
        return f"t{self.suffix}"

    def docker_name(self, role: str) -> str:
        """The name of this test's `role` network or volume."""
        return f"astats-test-{role}-{self.suffix}"

    def volume(self, role: str) -> str:
        name = self.docker_name(role)
        docker("volume", "create", name)
        self.volumes.append(name)
        return name

    def stack_context(self) -> StackContext:
        """This test's stack as the program's components are given it: the database's network
        as `data`, and the names of its edge network and volumes, each created by the test
        that uses it."""
        return StackContext(
            name=self.stack,
            networks=NetworkNames(edge=self.docker_name("edge"), data=self.network),
            volumes=VolumeNames(
                pgdata=self.docker_name("pgdata"),
                backups=self.docker_name("backups"),
                backend_logs=self.docker_name("backend-logs"),
                upstreams=self.docker_name("upstreams"),
                assets=self.docker_name("assets"),
            ),
            logging=LoggingSettings(),
        )

    def create(self, *args: str) -> str:
        name = f"astats-test-{uuid.uuid4().hex[:8]}"
        docker("create", f"--name={name}", *args)
        self.containers.append(name)
        return name

    def close(self) -> None:
        for container in reversed(self.containers):
            docker("rm", "--force", "--volumes", container, check=False)
        # The job containers run with --rm; one killed mid-run could still be going.
        docker("rm", "--force", f"astats-{self.stack}-pre-migration-backup", check=False)
        for volume in self.volumes:
            docker("volume", "rm", "--force", volume, check=False)


def endpoint(password: str) -> DatabaseEndpoint:
    """The database as the program's `Database` exposes it to the backend and the jobs."""
    return DatabaseEndpoint(
        host=DB_ALIAS,
        name=DATABASE.name,
        user=DATABASE.user,
        password=pulumi.Output.secret(password),
    )


def start_database(env: Env, scratch: Path) -> str:
    """The database as the program runs it: alias `db`, password uploaded as a file."""
    name = env.create(
        f"--network={env.network}",
        f"--network-alias={DB_ALIAS}",
        f"--shm-size={DATABASE.shm_size_mb}m",
        f"--env=POSTGRES_DB={DATABASE.name}",
        f"--env=POSTGRES_USER={DATABASE.user}",
        f"--env=POSTGRES_PASSWORD_FILE={PASSWORD_FILE}",
        f"--env=PGDATA={PGDATA}",
        f"--volume={env.volume('pgdata')}:{PGDATA}",
        env.images.postgres,
    )
    upload(name, {PASSWORD_FILE: (env.password, 0o444)}, scratch)
    docker("start", name)
    ready = pg_isready_test(DATABASE)[1:]
    deadline = time.monotonic() + 60
    while docker("exec", name, *ready, check=False).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"database never became ready: {docker('logs', name).stderr[-2000:]}")
        time.sleep(0.3)
    sql(name, "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)")
    sql(name, f"INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, {ROWS}) AS i")
    return name


def sql(database: str, statement: str) -> str:
    """Run SQL in the database container over its socket, as the server's own user."""
    result = docker(
        "exec",
        "--user=postgres",
        database,
        "psql",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-At",
        f"--username={DATABASE.user}",
        f"--dbname={DATABASE.name}",
        f"--command={statement}",
    )
    return result.stdout.strip()

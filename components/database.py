"""PostgreSQL: a retained data volume, no host port, the password delivered as a file; the
server runs as the image's own `postgres` user. The image is the configured one with pgBackRest
added (docker/postgres), and with `backup.pitr` on the server archives its WAL continuously
(components/pitr.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.config import BackupSettings, BuildSettings, DatabaseSettings
from components.container import Attachment, Files, Mount, ServiceSpec, Tmpfs
from components.endpoint import DatabaseEndpoint
from components.image import built_image
from components.pitr import (
    REPOSITORY_MOUNT,
    SECRET_CONFIG,
    SOCKET_DIR,
    OffsiteKeys,
    pgbackrest_env,
    server_options,
)
from components.service import ComponentInputs, Service

DB_ALIAS = "db"
SECRETS_DIR = "/run/secrets"
PASSWORD_FILE = f"{SECRETS_DIR}/db_password"
PGDATA = "/var/lib/postgresql/data"
# The official image's entrypoint runs as the user it is given: as root it would chown the
# data directory and drop to `postgres` (CHOWN, SETUID, SETGID); started as `postgres` it skips
# that. A fresh volume gets the image's PGDATA, owned by postgres; an existing one was chowned
# by the root entrypoint before.
SERVER_USER = "postgres"
# Where the server and the entrypoint write outside PGDATA: the socket and its lock file, and
# the entrypoint's and psql's scratch files.
SCRATCH = (Tmpfs(SOCKET_DIR, 1), Tmpfs("/tmp", 16))
PSQL_HISTORY = "/tmp/.psql_history"
DATABASE_DOCKERFILE = "docker/postgres/Dockerfile"


def pg_isready_test(settings: DatabaseSettings) -> list[str]:
    # Over TCP on purpose: during first initialisation the image's entrypoint runs a
    # temporary server on the unix socket only, which must not count as ready.
    return ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", settings.user, "-d", settings.name]


@dataclass(frozen=True, kw_only=True)
class DatabaseInputs(ComponentInputs):
    settings: DatabaseSettings
    password: pulumi.Output[str]
    backup: BackupSettings
    """Whether (and where) the server archives its WAL: `backup.pitr`, `backup.s3`."""
    offsite_keys: OffsiteKeys | None = None


class Database(Service):
    endpoint: DatabaseEndpoint
    image: pulumi.Output[str]
    """The built image's id."""
    image_name: str
    """Its local name (`astats-<stack>-database:latest`), what images built on it start FROM."""

    def __init__(
        self, name: str, inputs: DatabaseInputs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("astats:database:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = inputs.settings
        # How every other service reaches this database.
        self.endpoint = DatabaseEndpoint(
            host=DB_ALIAS, name=settings.name, user=settings.user, password=inputs.password
        )
        # The scheduler's image is built on this one (components/backup.py), so both run the
        # same pgBackRest and the same server binaries.
        self.image = built_image(
            "image",
            repository=inputs.stack.docker_name("database"),
            build=BuildSettings(
                context=".", dockerfile=DATABASE_DOCKERFILE, args={"POSTGRES_IMAGE": settings.image}
            ),
            opts=child,
        )
        self.image_name = f"{inputs.stack.docker_name('database')}:latest"
        envs: dict[str, pulumi.Input[str]] = {
            "POSTGRES_DB": settings.name,
            "POSTGRES_USER": settings.user,
            "POSTGRES_PASSWORD_FILE": PASSWORD_FILE,
            "PGDATA": PGDATA,
            # An operator's psql (astats psql) keeps its history on the tmpfs, not in
            # the read-only home directory.
            "PSQL_HISTORY": PSQL_HISTORY,
        }
        secrets: dict[str, pulumi.Input[str]] = {
            "db_password": pulumi.Output.secret(inputs.password)
        }
        mounts = [Mount(inputs.stack.volumes.pgdata, PGDATA)]
        scratch: tuple[Tmpfs, ...] = SCRATCH
        command: list[str] = []
        if inputs.backup.archiving:
            envs |= pgbackrest_env(inputs.backup, settings.user)
            if inputs.offsite_keys is not None and inputs.backup.offsite_archive is not None:
                envs["PGBACKREST_CONFIG"] = f"{SECRETS_DIR}/{SECRET_CONFIG}"
                secrets[SECRET_CONFIG] = inputs.offsite_keys.config_file()
            # The socket directory is a volume the scheduler shares: pgBackRest reaches the
            # server over its socket only.
            mounts += [
                Mount(inputs.stack.volumes.pgbackrest, REPOSITORY_MOUNT),
                Mount(inputs.stack.volumes.pgsocket, SOCKET_DIR),
            ]
            scratch = tuple(t for t in SCRATCH if t.path != SOCKET_DIR)
            command = server_options(inputs.backup)
        # pgBackRest's asynchronous archive-push leaves a process behind that is reparented to
        # PID 1; the postmaster, as PID 1, would reap it and restart as after a crash.
        spec = ServiceSpec(
            service="db",
            image=self.image,
            limits=settings,
            shm_size_mb=settings.shm_size_mb,
            command=command,
            envs=envs,
            files=Files(SECRETS_DIR, secrets),
            mounts=mounts,
            user=SERVER_USER,
            tmpfs=scratch,
            init=inputs.backup.archiving,
            networks=[Attachment(inputs.stack.networks.data, aliases=[DB_ALIAS])],
            health_test=pg_isready_test(settings),
            healthcheck=settings.healthcheck,
            exclusive=True,
        )
        self.run(inputs.stack, spec, after=inputs.after, outputs={"host": DB_ALIAS})

"""PostgreSQL: a retained data volume, no host port, the password delivered as a file; the
server runs as the image's own `postgres` user."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.config import DatabaseSettings
from components.container import Attachment, Files, Mount, ServiceSpec, Tmpfs
from components.endpoint import DatabaseEndpoint
from components.image import referenced_image
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
SCRATCH = (Tmpfs("/var/run/postgresql", 1), Tmpfs("/tmp", 16))
PSQL_HISTORY = "/tmp/.psql_history"


def pg_isready_test(settings: DatabaseSettings) -> list[str]:
    # Over TCP on purpose: during first initialisation the image's entrypoint runs a
    # temporary server on the unix socket only, which must not count as ready.
    return ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", settings.user, "-d", settings.name]


@dataclass(frozen=True, kw_only=True)
class DatabaseInputs(ComponentInputs):
    settings: DatabaseSettings
    password: pulumi.Output[str]


class Database(Service):
    endpoint: DatabaseEndpoint

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
        image = referenced_image("image", reference=settings.image, opts=child)
        spec = ServiceSpec(
            service="db",
            image=image,
            limits=settings,
            shm_size_mb=settings.shm_size_mb,
            envs={
                "POSTGRES_DB": settings.name,
                "POSTGRES_USER": settings.user,
                "POSTGRES_PASSWORD_FILE": PASSWORD_FILE,
                "PGDATA": PGDATA,
                # An operator's psql (astats psql) keeps its history on the tmpfs, not in
                # the read-only home directory.
                "PSQL_HISTORY": PSQL_HISTORY,
            },
            files=Files(SECRETS_DIR, {"db_password": pulumi.Output.secret(inputs.password)}),
            mounts=[Mount(inputs.stack.volumes.pgdata, PGDATA)],
            user=SERVER_USER,
            tmpfs=SCRATCH,
            networks=[Attachment(inputs.stack.networks.data, aliases=[DB_ALIAS])],
            health_test=pg_isready_test(settings),
            healthcheck=settings.healthcheck,
            exclusive=True,
        )
        self.run(inputs.stack, spec, after=inputs.after, outputs={"host": DB_ALIAS})

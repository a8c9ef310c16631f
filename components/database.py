"""PostgreSQL: a retained data volume, no host port, the password delivered as a file."""

from __future__ import annotations

import pulumi

from components.config import DatabaseSettings
from components.container import Attachment, Mount, ServiceSpec, StackContext, Upload
from components.endpoint import DatabaseEndpoint
from components.image import referenced_image
from components.service import Service

DB_ALIAS = "db"
PASSWORD_FILE = "/run/secrets/db_password"
PGDATA = "/var/lib/postgresql/data"


def pg_isready_test(settings: DatabaseSettings) -> list[str]:
    # Over TCP on purpose: during first initialisation the image's entrypoint runs a
    # temporary server on the unix socket only, which must not count as ready.
    return ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", settings.user, "-d", settings.name]


class Database(Service):
    endpoint: DatabaseEndpoint

    def __init__(
        self,
        name: str,
        stack: StackContext,
        settings: DatabaseSettings,
        *,
        password: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("astats:database:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # How every other service reaches this database.
        self.endpoint = DatabaseEndpoint(
            host=DB_ALIAS, name=settings.name, user=settings.user, password=password
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
            },
            uploads=[Upload(PASSWORD_FILE, password)],
            mounts=[Mount(stack.volumes.pgdata, PGDATA)],
            networks=[Attachment(stack.networks.data, aliases=[DB_ALIAS])],
            health_test=pg_isready_test(settings),
            healthcheck=settings.healthcheck,
            exclusive=True,
        )
        self.run(stack, spec, after=(), outputs={"host": DB_ALIAS})

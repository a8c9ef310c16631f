"""The FastAPI backend under Uvicorn, started only after its migration has run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi

from components.config import BackendSettings
from components.container import (
    Attachment,
    Mount,
    ServiceSpec,
    StackContext,
    Tmpfs,
    loopback_port,
)
from components.launcher import SHARED_DIR_ENV, launcher_entrypoint, launcher_files
from components.probe import http_probe
from components.release import BackendRelease
from components.service import ComponentInputs, ProxiedService
from components.workers import uvicorn_workers

if TYPE_CHECKING:
    from components.migration import Migration

LOG_FILE = "LATEST_LOG.txt"
# Python's temp files (request bodies spooled by multipart parsing, say).
SCRATCH = (Tmpfs("/tmp", 64),)


def group_of(user: str) -> str:
    """The gid of a `uid:gid` user (the config model checks the form)."""
    return user.split(":", 1)[1]


def uvicorn_command(settings: BackendSettings) -> list[str]:
    workers = uvicorn_workers(
        cpus=settings.cpus,
        memory_mb=settings.memory_mb,
        worker_memory_mb=settings.worker_memory_mb,
        override=settings.workers,
    )
    # nginx is the only peer on the edge network and the backend publishes no port by
    # default, so trusting forwarded headers from any peer address is safe here.
    return [
        "uvicorn",
        settings.app_module,
        "--host=0.0.0.0",
        f"--port={settings.port}",
        f"--workers={workers}",
        "--proxy-headers",
        "--forwarded-allow-ips=*",
    ]


def http_health_test(port: int, path: str) -> list[str]:
    """Healthy on 2xx or 3xx (as urllib, the probe without bash, counts it)."""
    script = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4).close()"
    )
    return http_probe(port, path, healthy="[23]??", fallback=["python", "-c", script])


@dataclass(frozen=True, kw_only=True)
class BackendInputs(ComponentInputs):
    release: BackendRelease
    """What the backend serves: the release's image and settings, on its database."""
    secret_key: pulumi.Output[str]

    @classmethod
    def after_migration(
        cls, migration: Migration, *, stack: StackContext, secret_key: pulumi.Output[str]
    ) -> BackendInputs:
        """The backend runs the release its migration migrated, once the migration has run."""
        return cls(
            stack=stack,
            release=migration.release,
            secret_key=secret_key,
            after=[migration.migration],
        )


class Backend(ProxiedService):
    api_prefixes: Sequence[str]
    """The paths nginx sends here; everything else goes to the frontend."""

    def __init__(
        self, name: str, inputs: BackendInputs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("astats:backend:Backend", name, None, opts)
        stack, settings, database = inputs.stack, inputs.release.settings, inputs.release.database
        self.api_prefixes = settings.api_prefixes
        spec = ServiceSpec(
            service="backend",
            image=inputs.release.image,
            limits=settings,
            entrypoint=launcher_entrypoint(),
            command=uvicorn_command(settings),
            # The log directory is shared with the backend's group, which the backup
            # scheduler joins to rotate the log.
            envs={**settings.env, "LOG_DIR": settings.log_dir, SHARED_DIR_ENV: settings.log_dir},
            files=launcher_files(
                {
                    "DATABASE_URL": database.url(),
                    "SECRET_KEY": inputs.secret_key,
                }
            ),
            mounts=[Mount(stack.volumes.backend_logs, settings.log_dir)],
            user=settings.user,
            tmpfs=SCRATCH,
            # No shared alias: nginx reaches this container by its name once it is healthy.
            networks=[Attachment(stack.networks.edge), Attachment(stack.networks.data)],
            host_ports=loopback_port(settings.host_port, settings.port),
            health_test=http_health_test(settings.port, settings.health_path),
            healthcheck=settings.healthcheck,
        )
        self.serve(stack, spec, port=settings.port, after=inputs.after)

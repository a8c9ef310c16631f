"""The Next.js frontend; it needs nothing from the database tier, so it rolls out in parallel."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.config import FrontendSettings, LoggingSettings
from components.container import Attachment, ServiceSpec, service_container
from components.launcher import launcher_entrypoint, launcher_uploads

FRONTEND_ALIAS = "frontend"


def node_health_test(port: int, path: str) -> list[str]:
    script = (
        f"fetch('http://127.0.0.1:{port}{path}')"
        ".then(r => process.exit(r.status < 500 ? 0 : 1), () => process.exit(1))"
    )
    return ["CMD", "node", "-e", script]


class Frontend(pulumi.ComponentResource):
    container: docker.Container
    host: str = FRONTEND_ALIAS

    def __init__(
        self,
        name: str,
        *,
        stack: str,
        settings: FrontendSettings,
        logging: LoggingSettings,
        image: pulumi.Input[str],
        drain_s: int,
        edge_network: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("astats:frontend:Frontend", name, None, opts)
        host_ports = (
            [("127.0.0.1", settings.host_port, settings.port)] if settings.host_port else []
        )
        self.container = service_container(
            "frontend",
            ServiceSpec(
                service="frontend",
                image=image,
                memory_mb=settings.memory_mb,
                cpus=settings.cpus,
                envs={
                    **settings.env,
                    "NODE_ENV": "production",
                    "PORT": str(settings.port),
                    "HOSTNAME": "0.0.0.0",
                },
                networks=[Attachment(edge_network, aliases=[FRONTEND_ALIAS])],
                host_ports=host_ports,
                health_test=node_health_test(settings.port, settings.health_path),
                healthcheck=settings.healthcheck,
                entrypoint=launcher_entrypoint(),
                # Docker drops an image's CMD once the entrypoint is overridden.
                command=settings.command,
                uploads=launcher_uploads({}),
                drain_s=drain_s,
            ),
            stack=stack,
            logging=logging,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"container": self.container.name})

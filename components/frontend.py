"""The Next.js frontend; it needs nothing from the database tier, so it rolls out in parallel."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.config import FrontendSettings
from components.container import Attachment, ServiceSpec, loopback_port
from components.launcher import launcher_entrypoint, launcher_uploads
from components.service import ComponentInputs, ProxiedService

FRONTEND_ALIAS = "frontend"


def node_health_test(port: int, path: str) -> list[str]:
    script = (
        f"fetch('http://127.0.0.1:{port}{path}')"
        ".then(r => process.exit(r.status < 500 ? 0 : 1), () => process.exit(1))"
    )
    return ["CMD", "node", "-e", script]


@dataclass(frozen=True, kw_only=True)
class FrontendInputs(ComponentInputs):
    settings: FrontendSettings
    image: pulumi.Input[str]


class Frontend(ProxiedService):
    def __init__(
        self, name: str, inputs: FrontendInputs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("astats:frontend:Frontend", name, None, opts)
        settings = inputs.settings
        self.upstream = f"{FRONTEND_ALIAS}:{settings.port}"
        spec = ServiceSpec(
            service="frontend",
            image=inputs.image,
            limits=settings,
            envs={
                **settings.env,
                "NODE_ENV": "production",
                "PORT": str(settings.port),
                "HOSTNAME": "0.0.0.0",
            },
            networks=[Attachment(inputs.stack.networks.edge, aliases=[FRONTEND_ALIAS])],
            host_ports=loopback_port(settings.host_port, settings.port),
            health_test=node_health_test(settings.port, settings.health_path),
            healthcheck=settings.healthcheck,
            entrypoint=launcher_entrypoint(),
            # Docker drops an image's CMD once the entrypoint is overridden.
            command=settings.command,
            uploads=launcher_uploads({}),
            drains=True,
        )
        self.run(inputs.stack, spec, after=inputs.after)

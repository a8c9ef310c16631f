"""The Next.js frontend; it needs nothing from the database tier, so it rolls out in parallel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import pulumi
import pulumi_command as command

from components.config import FrontendSettings
from components.container import Attachment, ServiceSpec, Tmpfs, loopback_port
from components.launcher import launcher_entrypoint
from components.probe import http_probe
from components.service import ComponentInputs, ProxiedService
from components.switch import publish_assets


def frontend_scratch(settings: FrontendSettings) -> tuple[Tmpfs, ...]:
    """Where the server writes: Node's temp files, and Next.js's cache beside its static files
    (`.next/cache`: optimised images, fetched data); a full cache only stops caching."""
    next_cache = str(PurePosixPath(settings.static_dir).parent / "cache")
    return (Tmpfs("/tmp", 64), Tmpfs(next_cache, 64))


def node_health_test(port: int, path: str) -> list[str]:
    """Healthy on any status below 500 (a page may redirect or need a login)."""
    script = (
        f"require('http').get('http://127.0.0.1:{port}{path}', {{timeout: 3000}}, "
        "r => process.exit(r.statusCode < 500 ? 0 : 1))"
        ".on('timeout', () => process.exit(1)).on('error', () => process.exit(1))"
    )
    return http_probe(port, path, healthy="[234]??", fallback=["node", "-e", script])


@dataclass(frozen=True, kw_only=True)
class FrontendInputs(ComponentInputs):
    settings: FrontendSettings
    image: pulumi.Input[str]


class Frontend(ProxiedService):
    assets: command.local.Command
    """This release's static files published beside the last releases'."""

    def __init__(
        self, name: str, inputs: FrontendInputs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("astats:frontend:Frontend", name, None, opts)
        settings = inputs.settings
        # The release's static files join the last releases' before traffic moves to it.
        self.assets = publish_assets(
            self,
            inputs.stack,
            image=inputs.image,
            static_dir=settings.static_dir,
            keep=settings.keep_asset_releases,
        )
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
            # No shared alias: nginx reaches this container by its name once it is healthy.
            networks=[Attachment(inputs.stack.networks.edge)],
            host_ports=loopback_port(settings.host_port, settings.port),
            health_test=node_health_test(settings.port, settings.health_path),
            healthcheck=settings.healthcheck,
            entrypoint=launcher_entrypoint(),
            # Docker drops an image's CMD once the entrypoint is overridden.
            command=settings.command,
            user=settings.user,
            tmpfs=frontend_scratch(settings),
        )
        self.serve(
            inputs.stack,
            spec,
            port=settings.port,
            after=inputs.after,
            switch_after=[self.assets],
        )

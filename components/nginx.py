"""nginx: the only published port; routes the API and the dev cockpit's WebSocket to the
backend and everything else to the frontend."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.backend import Backend
from components.config import NginxSettings
from components.container import Attachment, Mount, ServiceSpec, Upload
from components.image import referenced_image
from components.nginx_conf import SwitchedUpstreams, render_nginx_conf
from components.service import ComponentInputs, ProxiedService, Service
from components.switch import ASSETS_DIR, UPSTREAM_DIR

CONFIG_PATH = "/etc/nginx/nginx.conf"
LISTEN_PORT = 80


def nginx_health_test() -> list[str]:
    return ["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{LISTEN_PORT}/healthz"]


@dataclass(frozen=True, kw_only=True)
class NginxInputs(ComponentInputs):
    """nginx starts once both services it proxies to are healthy and switched to."""

    settings: NginxSettings
    backend: Backend
    """Where the API prefixes and the WebSocket path go."""
    frontend: ProxiedService
    """Where everything else goes."""


class Nginx(Service):
    config_text: str

    def __init__(self, name: str, inputs: NginxInputs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("astats:nginx:Nginx", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = inputs.settings
        backend, frontend = inputs.backend, inputs.frontend
        self.config_text = render_nginx_conf(
            settings,
            backend.api_prefixes,
            SwitchedUpstreams(UPSTREAM_DIR),
            listen_port=LISTEN_PORT,
            assets_root=ASSETS_DIR,
        )
        image = referenced_image("image", reference=settings.image, opts=child)
        spec = ServiceSpec(
            service="nginx",
            image=image,
            limits=settings,
            uploads=[Upload(CONFIG_PATH, self.config_text)],
            mounts=[
                Mount(inputs.stack.volumes.upstreams, UPSTREAM_DIR),
                Mount(inputs.stack.volumes.assets, ASSETS_DIR, read_only=True),
            ],
            networks=[Attachment(inputs.stack.networks.edge)],
            host_ports=[(settings.bind_address, settings.http_port, LISTEN_PORT)],
            health_test=nginx_health_test(),
            healthcheck=settings.healthcheck,
        )
        self.run(inputs.stack, spec, after=[*inputs.after, backend.traffic, frontend.traffic])

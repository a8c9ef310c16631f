"""nginx: the only published port; routes the API and the dev cockpit's WebSocket to the
backend and everything else to the frontend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi

from components.backend import Backend
from components.config import NginxSettings
from components.container import Attachment, Files, Mount, ServiceSpec, Tmpfs
from components.image import referenced_image
from components.nginx_conf import NginxRuntime, SwitchedUpstreams, render_nginx_conf
from components.service import ComponentInputs, ProxiedService, Service
from components.switch import ASSETS_DIR, NGINX_USER, UPSTREAM_DIR
from components.tls import NginxTls

# Its own directory: the image's /etc/nginx stays as it is, read-only.
CONFIG_DIR = "/etc/nginx/astats"
CONFIG_PATH = f"{CONFIG_DIR}/nginx.conf"
# Unprivileged: nginx runs as its image's `nginx` user, which cannot bind a port below 1024
# (and needs no NET_BIND_SERVICE for 8080); the host port maps to it.
LISTEN_PORT = 8080
RUNTIME = NginxRuntime()
# How nginx is started, and how the traffic switch's `nginx -t` and `nginx -s reload` (run in
# the container by `docker exec`, which sees its environment) find the same config. `-e`: the
# image's default error log path may not be writable by nginx's user.
NGINX_COMMAND = f"nginx -e stderr -c {CONFIG_PATH}"
# nginx's entrypoint: nginx in the foreground and, with certificates that renew, a watcher that
# reloads it when they change (components/files/nginx-run.sh).
RUN_SCRIPT = (Path(__file__).parent / "files" / "nginx-run.sh").read_text()
RUN_PATH = f"{CONFIG_DIR}/run.sh"


def nginx_scratch(settings: NginxSettings) -> tuple[Tmpfs, ...]:
    """Where nginx writes: its pid file, and its temp files (request bodies and responses
    too large for its buffers), which count against its memory: half of it at most."""
    pid_dir = RUNTIME.pid_path.rsplit("/", 1)[0]
    return (
        Tmpfs(pid_dir, 1, owner=NGINX_USER),
        Tmpfs(RUNTIME.temp_dir, max(16, settings.memory_mb // 2), owner=NGINX_USER),
    )


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
    tls: NginxTls | None = None
    """HTTPS (components/tls.py); None serves plain HTTP only."""


class Nginx(Service):
    config_text: str

    def __init__(self, name: str, inputs: NginxInputs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("astats:nginx:Nginx", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = inputs.settings
        backend, frontend, tls = inputs.backend, inputs.frontend, inputs.tls
        self.config_text = render_nginx_conf(
            settings,
            backend.api_prefixes,
            SwitchedUpstreams(UPSTREAM_DIR),
            listen_port=LISTEN_PORT,
            assets_root=ASSETS_DIR,
            runtime=RUNTIME,
            tls=tls.conf if tls else None,
        )
        host_ports = [(settings.bind_address, settings.http_port, LISTEN_PORT)]
        if tls is not None:
            host_ports.append((settings.bind_address, tls.host_port, tls.conf.listen_port))
        files: dict[str, pulumi.Input[str]] = {
            "nginx.conf": self.config_text,
            RUN_PATH.rsplit("/", 1)[1]: RUN_SCRIPT,
            **(tls.files if tls else {}),
        }
        image = referenced_image("image", reference=settings.image, opts=child)
        spec = ServiceSpec(
            service="nginx",
            image=image,
            limits=settings,
            # The image's entrypoint is left alone; the shell runs nginx in the foreground and,
            # with renewing certificates, the watcher that reloads it.
            command=["/bin/sh", RUN_PATH, *([tls.watched] if tls and tls.watched else [])],
            envs={"NGINX_COMMAND": NGINX_COMMAND},
            files=Files(CONFIG_DIR, files),
            user=NGINX_USER,
            tmpfs=nginx_scratch(settings),
            mounts=[
                Mount(inputs.stack.volumes.upstreams, UPSTREAM_DIR),
                Mount(inputs.stack.volumes.assets, ASSETS_DIR, read_only=True),
                *(tls.mounts if tls else ()),
            ],
            networks=[Attachment(inputs.stack.networks.edge)],
            host_ports=host_ports,
            health_test=nginx_health_test(),
            healthcheck=settings.healthcheck,
            labels=dict(tls.labels) if tls else {},
        )
        waits = [*inputs.after, backend.traffic, frontend.traffic, *(tls.after if tls else ())]
        self.run(inputs.stack, spec, after=waits)

"""The whole A-Stats Engine for one stack, wired in rollout order (see DESIGN.md)."""

from __future__ import annotations

import pulumi

from components.backend import LOG_FILE, Backend
from components.backup import Backups
from components.config import StackConfig
from components.database import Database
from components.frontend import Frontend
from components.image import app_image
from components.migration import Migration
from components.network import Networks
from components.nginx import Nginx
from components.nginx_conf import Upstreams
from components.volumes import Volumes


class AstatsStack(pulumi.ComponentResource):
    """networks, volumes -> database -> verified backup -> migration -> backend -> nginx,
    with the frontend built and started in parallel with the database chain."""

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("astats:stack:AstatsStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack, settings, secrets = config.stack, config.settings, config.secrets
        # An old backend or frontend keeps serving after its stop until nginx has re-resolved
        # the name to the replacement (its DNS cache counts whole seconds: valid + 1).
        drain_s = settings.nginx.resolver_valid_s + 2

        self.networks = Networks("networks", stack=stack, opts=child)
        self.volumes = Volumes("volumes", stack=stack, settings=settings, opts=child)
        self.database = Database(
            "database",
            stack=stack,
            settings=settings.database,
            logging=settings.logging,
            password=secrets.db_password,
            volume=self.volumes.pgdata.name,
            network=self.networks.data.name,
            opts=child,
        )
        backend_image = app_image(
            "backend-image",
            repository=f"astats-{stack}-backend",
            settings=settings.backend,
            opts=child,
        )
        frontend_image = app_image(
            "frontend-image",
            repository=f"astats-{stack}-frontend",
            settings=settings.frontend,
            opts=child,
        )
        self.backups = Backups(
            "backups",
            stack=stack,
            settings=settings.backup,
            database=settings.database,
            endpoint=self.database.endpoint,
            logging=settings.logging,
            s3_access_key_id=secrets.s3_access_key_id,
            s3_secret_access_key=secrets.s3_secret_access_key,
            alert_webhook_url=secrets.alert_webhook_url,
            backups_volume=self.volumes.backups.name,
            data_network=self.networks.data.name,
            egress_network=self.networks.edge.name,
            backend_logs=self.volumes.backend_logs.name,
            backend_log_file=LOG_FILE,
            after=[self.database.container],
            opts=child,
        )
        self.migration = Migration(
            "migration",
            stack=stack,
            backend=settings.backend,
            database=settings.database,
            endpoint=self.database.endpoint,
            backend_image=backend_image,
            backup_image=self.backups.image,
            backups_volume=self.volumes.backups.name,
            data_network=self.networks.data.name,
            after=[self.database.container],
            opts=child,
        )
        self.backend = Backend(
            "backend",
            stack=stack,
            settings=settings.backend,
            database=self.database.endpoint,
            logging=settings.logging,
            image=backend_image,
            secret_key=secrets.secret_key,
            logs_volume=self.volumes.backend_logs.name,
            drain_s=drain_s,
            edge_network=self.networks.edge.name,
            data_network=self.networks.data.name,
            after=[self.migration.migration],
            opts=child,
        )
        self.frontend = Frontend(
            "frontend",
            stack=stack,
            settings=settings.frontend,
            logging=settings.logging,
            image=frontend_image,
            drain_s=drain_s,
            edge_network=self.networks.edge.name,
            opts=child,
        )
        self.nginx = Nginx(
            "nginx",
            stack=stack,
            settings=settings.nginx,
            api_prefixes=settings.backend.api_prefixes,
            upstreams=Upstreams(
                backend=f"{self.backend.host}:{settings.backend.port}",
                frontend=f"{self.frontend.host}:{settings.frontend.port}",
            ),
            logging=settings.logging,
            edge_network=self.networks.edge.name,
            after=[self.backend.container, self.frontend.container],
            opts=child,
        )
        port = settings.nginx.http_port
        self.url = f"http://{settings.public_host}" + ("" if port == 80 else f":{port}")
        self.register_outputs({"url": self.url})

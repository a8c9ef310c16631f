"""The whole A-Stats Engine for one stack, its components created in rollout order.

Each component waits only for what it is handed (`after`, another component's outputs, or for
nginx the services it proxies to), so the order below is also the dependency graph `pulumi up`
follows.
"""

from __future__ import annotations

import pulumi

from components.backend import Backend, BackendInputs
from components.backup import Backups, BackupSecrets, BackupsInputs
from components.config import AppImageSettings, StackConfig, StackSettings
from components.container import StackContext
from components.database import Database, DatabaseInputs
from components.frontend import Frontend, FrontendInputs
from components.image import app_image, referenced_image
from components.migration import Migration, MigrationInputs
from components.network import Networks
from components.nginx import CONFIG_DIR, Nginx, NginxInputs
from components.release import BackendRelease
from components.release_record import ReleaseImages, record_release
from components.tls import Certificates, NginxTls, files_tls
from components.volumes import Volumes


class AstatsStack(pulumi.ComponentResource):
    """networks, volumes -> database -> verified backup -> migration -> backend -> nginx,
    with the frontend built and started in parallel with the database chain, and the
    scheduled backups started once the database is healthy. With ACME, the client's image and
    a placeholder certificate come before nginx, and the client itself after it."""

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("astats:stack:AstatsStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings, secrets = config.settings, config.secrets

        self.networks = Networks("networks", stack=config.stack, opts=child)
        self.volumes = Volumes("volumes", stack=config.stack, settings=settings, opts=child)
        stack = StackContext.of(config.stack, settings, self.networks.names, self.volumes.names)

        backup_secrets = BackupSecrets.of(secrets)
        self.database = Database(
            "database",
            DatabaseInputs(
                stack=stack,
                settings=settings.database,
                password=secrets.db_password,
                backup=settings.backup,
                offsite_keys=backup_secrets.offsite_keys,
            ),
            opts=child,
        )
        pin = settings.releases.pin
        backend_image = pinned_or_built(
            "backend", pin.backend_image, stack, settings.backend, opts=child
        )
        release = BackendRelease(
            settings=settings.backend, image=backend_image, database=self.database.endpoint
        )
        frontend_image = pinned_or_built(
            "frontend", pin.frontend_image, stack, settings.frontend, opts=child
        )
        self.backups = Backups(
            "backups",
            BackupsInputs(
                stack=stack,
                settings=settings.backup,
                database=self.database.endpoint,
                server_image=self.database.image,
                server_image_name=self.database.image_name,
                db_user=settings.database.user,
                secrets=backup_secrets,
                backend_user=settings.backend.user,
                after=[self.database.container],
            ),
            opts=child,
        )
        self.migration = Migration(
            "migration",
            MigrationInputs(
                stack=stack,
                release=release,
                backup_image=self.backups.image,
                backup_settings=settings.backup,
                after=[self.database.container],
            ),
            opts=child,
        )
        self.backend = Backend(
            "backend",
            BackendInputs.after_migration(
                self.migration, stack=stack, secret_key=secrets.secret_key
            ),
            opts=child,
        )
        self.frontend = Frontend(
            "frontend",
            FrontendInputs(stack=stack, settings=settings.frontend, image=frontend_image),
            opts=child,
        )
        self.certificates: Certificates | None = None
        tls: NginxTls | None = None
        if settings.tls.mode == "acme":
            self.certificates = Certificates("certificates", config, stack, opts=child)
            tls = self.certificates.nginx_tls
        elif settings.tls.mode == "files":
            tls = files_tls(config, CONFIG_DIR)
        self.nginx = Nginx(
            "nginx",
            NginxInputs(
                stack=stack,
                settings=settings.nginx,
                backend=self.backend,
                frontend=self.frontend,
                tls=tls,
            ),
            opts=child,
        )
        if self.certificates is not None:
            self.certificates.start_client(self.nginx)
        self.release = record_release(
            self,
            stack=config.stack,
            settings=settings.releases,
            images=ReleaseImages(
                backend=backend_image,
                backend_reference=image_reference(
                    "backend", pin.backend_image, stack, settings.backend
                ),
                frontend=frontend_image,
                frontend_reference=image_reference(
                    "frontend", pin.frontend_image, stack, settings.frontend
                ),
            ),
            backup=self.migration.backup.stdout,
            db_user=settings.database.user,
            db_name=settings.database.name,
            after=[self.nginx],
        )
        self.url = public_url(settings)
        self.register_outputs({"url": self.url})


def pinned_or_built(
    service: str,
    pinned: str | None,
    stack: StackContext,
    settings: AppImageSettings,
    *,
    opts: pulumi.ResourceOptions,
) -> pulumi.Output[str]:
    """The image a service runs: a rollback's pin, else its build or reference. The build
    stays declared while pinned, so unpinning rebuilds nothing that did not change."""
    image = app_image(
        f"{service}-image", repository=stack.docker_name(service), settings=settings, opts=opts
    )
    if pinned is None:
        return image
    return referenced_image(f"{service}-pinned", reference=pinned, opts=opts)


def image_reference(
    service: str, pinned: str | None, stack: StackContext, settings: AppImageSettings
) -> str:
    """How a release names the image it runs, for operators (the id says which exactly)."""
    if pinned is not None:
        return pinned
    if settings.image is not None:
        return settings.image
    return f"{stack.docker_name(service)}:latest"


def public_url(settings: StackSettings) -> str:
    """The site's address: HTTPS on its port when TLS is on, else HTTP on nginx's."""
    scheme, port, default = (
        ("https", settings.tls.https_port, 443)
        if settings.tls.enabled
        else ("http", settings.nginx.http_port, 80)
    )
    return f"{scheme}://{settings.public_host}" + ("" if port == default else f":{port}")

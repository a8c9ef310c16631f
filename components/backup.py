"""Backups: the backups volume, the backup image, and the scheduled backup/maintenance container."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.config import (
    BackupSettings,
    BuildSettings,
    DatabaseSettings,
    Healthcheck,
    LoggingSettings,
)
from components.container import Attachment, Mount, ServiceSpec, service_container
from components.endpoint import DatabaseEndpoint
from components.image import built_image
from components.launcher import launcher_entrypoint, launcher_uploads

BACKUPS_MOUNT = "/backups"
LOGS_MOUNT = "/backend-logs"
STATUS_FILE = f"{BACKUPS_MOUNT}/.astats-status.json"
BACKUP_DOCKERFILE = "docker/backup/Dockerfile"
# The variable astats_ops reads the webhook from (astats_ops/alerts.py).
ALERT_WEBHOOK_ENV = "ASTATS_ALERT_WEBHOOK_URL"
SCHEDULE_HEALTHCHECK = Healthcheck(interval_s=15, timeout_s=10, retries=3, start_period_s=10)


def schedule_command(settings: BackupSettings, log_file: str) -> list[str]:
    argv = [
        "python3",
        "-m",
        "astats_ops",
        "schedule",
        f"--dest={BACKUPS_MOUNT}",
        f"--interval-minutes={settings.interval_minutes}",
        f"--keep-last={settings.keep_last}",
        f"--keep-daily={settings.keep_daily}",
        f"--keep-weekly={settings.keep_weekly}",
        f"--status-file={STATUS_FILE}",
        f"--rotate-log={LOGS_MOUNT}/{log_file}",
        f"--rotate-max-bytes={settings.log_rotate_max_mb * 1024 * 1024}",
        f"--rotate-keep={settings.log_rotate_keep}",
    ]
    if not settings.drills:
        argv.append("--no-drill")
    elif settings.drill_every_minutes is not None:
        argv.append(f"--drill-every-minutes={settings.drill_every_minutes}")
    if settings.s3 is not None:
        s3 = settings.s3
        argv += [f"--s3-bucket={s3.bucket}", f"--s3-prefix={s3.prefix}", f"--s3-region={s3.region}"]
        if s3.endpoint_url:
            argv.append(f"--s3-endpoint-url={s3.endpoint_url}")
    return argv


def health_command(settings: BackupSettings) -> list[str]:
    # Healthy while the last run succeeded within two intervals (one run may be slow or
    # retried) plus the time a large backup can take.
    budget = 2 * settings.interval_minutes + 30
    return [
        "CMD",
        "python3",
        "-m",
        "astats_ops",
        "health",
        f"--status-file={STATUS_FILE}",
        f"--max-age-minutes={budget}",
    ]


class Backups(pulumi.ComponentResource):
    image: pulumi.Output[str]
    container: docker.Container | None

    def __init__(
        self,
        name: str,
        *,
        stack: str,
        settings: BackupSettings,
        database: DatabaseSettings,
        endpoint: DatabaseEndpoint,
        logging: LoggingSettings,
        s3_access_key_id: pulumi.Output[str] | None,
        s3_secret_access_key: pulumi.Output[str] | None,
        alert_webhook_url: pulumi.Output[str] | None,
        backups_volume: pulumi.Input[str],
        data_network: pulumi.Input[str],
        egress_network: pulumi.Input[str],
        backend_logs: pulumi.Input[str],
        backend_log_file: str,
        after: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("astats:backup:Backups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Built on the configured postgres image, so pg_dump matches the server's major version.
        self.image = built_image(
            "image",
            repository=f"astats-{stack}-backup",
            build=BuildSettings(
                context=".",
                dockerfile=BACKUP_DOCKERFILE,
                args={"POSTGRES_IMAGE": database.image},
            ),
            opts=child,
        )
        self.container = None
        if settings.enabled:
            secrets = {"PGPASSWORD": endpoint.password}
            if s3_access_key_id is not None and s3_secret_access_key is not None:
                secrets["AWS_ACCESS_KEY_ID"] = s3_access_key_id
                secrets["AWS_SECRET_ACCESS_KEY"] = s3_secret_access_key
            if alert_webhook_url is not None:
                secrets[ALERT_WEBHOOK_ENV] = alert_webhook_url
            networks = [Attachment(data_network)]
            # The data network is internal: offsite copies and alerts leave through the edge.
            if settings.s3 is not None or alert_webhook_url is not None:
                networks.append(Attachment(egress_network))
            self.container = service_container(
                "scheduler",
                ServiceSpec(
                    service="backup",
                    image=self.image,
                    memory_mb=settings.memory_mb,
                    cpus=settings.cpus,
                    entrypoint=launcher_entrypoint(),
                    command=schedule_command(settings, backend_log_file),
                    envs=endpoint.libpq_env(),
                    uploads=launcher_uploads(secrets),
                    mounts=[Mount(backups_volume, BACKUPS_MOUNT), Mount(backend_logs, LOGS_MOUNT)],
                    networks=networks,
                    health_test=health_command(settings),
                    healthcheck=SCHEDULE_HEALTHCHECK,
                    exclusive=True,
                    # Rotating LATEST_LOG.txt means truncating a file the backend's own user
                    # owns, whatever uid that is in the real image: only root can.
                    user="0:0",
                ),
                stack=stack,
                logging=logging,
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )
        self.register_outputs({"image": self.image})

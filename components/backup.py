"""Backups: the backups volume, the backup image, and the scheduled backup/maintenance container."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.backend import LOG_FILE, group_of
from components.config import BackupSettings, BuildSettings, Healthcheck, StackSecrets
from components.container import Attachment, Mount, ServiceSpec, Tmpfs, service_container
from components.endpoint import DatabaseEndpoint
from components.image import built_image
from components.launcher import launcher_entrypoint, launcher_files
from components.pitr import PGDATA, REPOSITORY_MOUNT, SOCKET_DIR, OffsiteKeys, pgbackrest_env
from components.service import ComponentInputs

BACKUPS_MOUNT = "/backups"
LOGS_MOUNT = "/backend-logs"
STATUS_FILE = f"{BACKUPS_MOUNT}/.astats-status.json"
BACKUP_DOCKERFILE = "docker/backup/Dockerfile"
# The variable astats_ops reads the webhook from (astats_ops/alerts.py).
ALERT_WEBHOOK_ENV = "ASTATS_ALERT_WEBHOOK_URL"
SCHEDULE_HEALTHCHECK = Healthcheck(interval_s=15, timeout_s=10, retries=3, start_period_s=10)
# The backup image's own unprivileged user (docker/backup/Dockerfile): it owns /backups, and
# pg_dump, pg_restore and psql need nothing more.
BACKUP_USER = "postgres"
# Python's temp files: the lists of a restore's split loads, a pg_restore's captured stderr.
SCRATCH = (Tmpfs("/tmp", 64),)


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
    if settings.archiving:
        pitr = settings.pitr
        argv += [
            "--pitr",
            f"--pitr-archive-timeout-s={pitr.archive_timeout_s}",
            f"--pitr-full-every-hours={pitr.full_every_hours}",
            f"--pitr-diff-every-hours={pitr.diff_every_hours}",
            f"--pitr-drill-every-hours={pitr.drill_every_hours}",
        ]
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


@dataclass(frozen=True)
class BackupSecrets:
    """What the scheduler needs besides the database password (which the endpoint carries)."""

    s3_access_key_id: pulumi.Output[str] | None = None
    s3_secret_access_key: pulumi.Output[str] | None = None
    alert_webhook_url: pulumi.Output[str] | None = None

    @classmethod
    def of(cls, secrets: StackSecrets) -> BackupSecrets:
        """The scheduler's share of the stack's secrets."""
        return cls(
            secrets.s3_access_key_id, secrets.s3_secret_access_key, secrets.alert_webhook_url
        )

    @property
    def offsite_keys(self) -> OffsiteKeys | None:
        if self.s3_access_key_id is None or self.s3_secret_access_key is None:
            return None
        return OffsiteKeys(self.s3_access_key_id, self.s3_secret_access_key)

    def files(
        self, database_password: pulumi.Output[str], *, archive_offsite: bool = False
    ) -> dict[str, pulumi.Output[str]]:
        """The launcher's secret files, by the variable each one becomes."""
        secrets = {"PGPASSWORD": database_password}
        keys = self.offsite_keys
        if keys is not None:
            secrets["AWS_ACCESS_KEY_ID"] = keys.access_key_id
            secrets["AWS_SECRET_ACCESS_KEY"] = keys.secret_access_key
            if archive_offsite:
                secrets |= keys.env_files()
        if self.alert_webhook_url is not None:
            secrets[ALERT_WEBHOOK_ENV] = self.alert_webhook_url
        return secrets


@dataclass(frozen=True, kw_only=True)
class BackupsInputs(ComponentInputs):
    settings: BackupSettings
    database: DatabaseEndpoint
    server_image: pulumi.Output[str]
    """The database's image id (pgBackRest added), which the backup image is built on."""
    server_image_name: str
    """Its local name, for the backup image's FROM."""
    db_user: str
    secrets: BackupSecrets
    backend_user: str
    """`uid:gid` of the backend, whose log the scheduler rotates as a member of its group."""


class Backups(pulumi.ComponentResource):
    image: pulumi.Output[str]
    container: docker.Container | None

    def __init__(
        self, name: str, inputs: BackupsInputs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("astats:backup:Backups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack, settings, secrets = inputs.stack, inputs.settings, inputs.secrets
        # Built on the database's image, so pg_dump matches the server's major version and
        # pgBackRest its archiver's; the base's id is an argument, so a new base rebuilds it.
        self.image = built_image(
            "image",
            repository=stack.docker_name("backup"),
            build=BuildSettings(
                context=".",
                dockerfile=BACKUP_DOCKERFILE,
                args={"POSTGRES_IMAGE": inputs.server_image_name},
            ),
            base_id=inputs.server_image,
            opts=child,
        )
        self.container = None
        if settings.enabled:
            networks = [Attachment(stack.networks.data)]
            # The data network is internal: offsite copies and alerts leave through the edge.
            if settings.s3 is not None or secrets.alert_webhook_url is not None:
                networks.append(Attachment(stack.networks.edge))
            envs = dict(inputs.database.libpq_env())
            mounts = [
                Mount(stack.volumes.backups, BACKUPS_MOUNT),
                Mount(stack.volumes.backend_logs, LOGS_MOUNT),
            ]
            if settings.archiving:
                # pgBackRest copies the data directory's files (read-only here, as the server's
                # own user) and talks to the server over its socket.
                envs |= pgbackrest_env(settings, inputs.db_user)
                mounts += [
                    Mount(stack.volumes.pgdata, PGDATA, read_only=True),
                    Mount(stack.volumes.pgbackrest, REPOSITORY_MOUNT),
                    Mount(stack.volumes.pgsocket, SOCKET_DIR),
                ]
            archive_offsite = settings.offsite_archive is not None
            spec = ServiceSpec(
                service="backup",
                image=self.image,
                limits=settings,
                entrypoint=launcher_entrypoint(),
                command=schedule_command(settings, LOG_FILE),
                envs=envs,
                files=launcher_files(
                    secrets.files(inputs.database.password, archive_offsite=archive_offsite)
                ),
                mounts=mounts,
                networks=networks,
                health_test=health_command(settings),
                healthcheck=SCHEDULE_HEALTHCHECK,
                exclusive=True,
                # Rotating LATEST_LOG.txt truncates a file the backend's user owns: the
                # backend keeps its log directory group-writable (launch.sh), and the
                # scheduler joins that group. No root, no DAC_OVERRIDE.
                user=BACKUP_USER,
                group_add=[group_of(inputs.backend_user)],
                tmpfs=SCRATCH,
            )
            self.container = service_container(
                self, stack, spec, name="scheduler", after=inputs.after
            ).container
        self.register_outputs({"image": self.image})

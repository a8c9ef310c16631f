"""The guarded migration: a verified backup, then `alembic upgrade head`, then (elsewhere) the
backend. Both jobs run when the backend image or the migration changes, never on a no-op up."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.backup import BACKUPS_MOUNT
from components.config import BackendSettings, DatabaseSettings
from components.endpoint import DatabaseEndpoint, libpq_env
from components.jobs import JobSpec, job_command
from components.release import BackendRelease
from components.service import ComponentInputs


def pre_migration_backup_job(
    *,
    stack: str,
    database: DatabaseSettings | DatabaseEndpoint,
    database_host: str,
    image: pulumi.Input[str],
    network: pulumi.Input[str],
    backups_volume: pulumi.Input[str],
) -> JobSpec:
    """`astats_ops backup` in the backup image; prints the verified backup's path."""
    return JobSpec(
        stack=stack,
        name="pre-migration-backup",
        service="backup",
        image=image,
        network=network,
        command=["python3", "-m", "astats_ops", "backup", "--dest", BACKUPS_MOUNT],
        memory_mb=512,
        secret_env="PGPASSWORD",
        envs=libpq_env(host=database_host, name=database.name, user=database.user),
        volumes=[(backups_volume, BACKUPS_MOUNT)],
    )


def migration_job(
    *,
    stack: str,
    backend: BackendSettings,
    image: pulumi.Input[str],
    network: pulumi.Input[str],
) -> JobSpec:
    """The migration command in the backend image, with DATABASE_URL from stdin."""
    return JobSpec(
        stack=stack,
        name="migration",
        service="migration",
        image=image,
        network=network,
        command=backend.migration_command,
        memory_mb=backend.memory_mb,
        secret_env="DATABASE_URL",
    )


@dataclass(frozen=True, kw_only=True)
class MigrationInputs(ComponentInputs):
    release: BackendRelease
    """What the migration runs: the release's migration command, in its image, on its database."""
    backup_image: pulumi.Input[str]


class Migration(pulumi.ComponentResource):
    release: BackendRelease
    """The release this migration migrates the database for."""
    backup: command.local.Command
    migration: command.local.Command

    def __init__(
        self, name: str, inputs: MigrationInputs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("astats:migration:Migration", name, None, opts)
        stack, release, database = inputs.stack, inputs.release, inputs.release.database
        self.release = release
        # Everything the migration's command line is made of. It replaces the backup job, and
        # the migration is replaced only by a new backup's path: no input change can re-run
        # the migration without a fresh backup in the same rollout.
        fingerprint: list[pulumi.Input[str]] = [
            release.image,
            " ".join(release.settings.migration_command),
            database.name,
            database.user,
            database.host,
        ]
        backup = pre_migration_backup_job(
            stack=stack.name,
            database=database,
            database_host=database.host,
            image=inputs.backup_image,
            network=stack.networks.data,
            backups_volume=stack.volumes.backups,
        )
        self.backup = job_command(
            self, backup, database.password, triggers=fingerprint, after=inputs.after
        )
        migration = migration_job(
            stack=stack.name,
            backend=release.settings,
            image=release.image,
            network=stack.networks.data,
        )
        self.migration = job_command(
            self, migration, database.url(), triggers=[self.backup.stdout], after=[self.backup]
        )
        self.register_outputs(
            {"preMigrationBackup": self.backup.stdout, "migrationOutput": self.migration.stdout}
        )

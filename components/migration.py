"""The guarded migration: a verified backup, then `alembic upgrade head`, then (elsewhere) the
backend. Both jobs run when the backend image or the migration changes, never on a no-op up."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.backend import SCRATCH as BACKEND_SCRATCH
from components.backup import BACKUP_USER, BACKUPS_MOUNT
from components.backup import SCRATCH as BACKUP_SCRATCH
from components.config import BackupSettings
from components.container import StackContext
from components.endpoint import DatabaseEndpoint
from components.jobs import JobSpec, job_command
from components.release import BackendRelease
from components.service import ComponentInputs


def pre_migration_backup_job(
    stack: StackContext,
    database: DatabaseEndpoint,
    image: pulumi.Input[str],
    settings: BackupSettings,
) -> JobSpec:
    """`astats_ops backup` of `database` in the backup `image`, into the stack's backups
    volume, as the scheduler runs (`settings`: its PIDs limit); prints the verified backup's
    path."""
    return JobSpec(
        stack=stack.name,
        name="pre-migration-backup",
        service="backup",
        image=image,
        network=stack.networks.data,
        command=["python3", "-m", "astats_ops", "backup", "--dest", BACKUPS_MOUNT],
        memory_mb=512,
        secret_env="PGPASSWORD",
        user=BACKUP_USER,
        pids_limit=settings.pids_limit,
        envs=database.libpq_env(),
        volumes=[(stack.volumes.backups, BACKUPS_MOUNT)],
        tmpfs=BACKUP_SCRATCH,
    )


def migration_job(stack: StackContext, release: BackendRelease) -> JobSpec:
    """The release's migration command in its image, with DATABASE_URL from stdin."""
    return JobSpec(
        stack=stack.name,
        name="migration",
        service="migration",
        image=release.image,
        network=stack.networks.data,
        command=release.settings.migration_command,
        memory_mb=release.settings.memory_mb,
        secret_env="DATABASE_URL",
        user=release.settings.user,
        pids_limit=release.settings.pids_limit,
        tmpfs=BACKEND_SCRATCH,
    )


@dataclass(frozen=True, kw_only=True)
class MigrationInputs(ComponentInputs):
    release: BackendRelease
    """What the migration runs: the release's migration command, in its image, on its database."""
    backup_image: pulumi.Input[str]
    backup_settings: BackupSettings
    """The pre-migration backup runs as the scheduled ones do."""


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
            stack, database, inputs.backup_image, inputs.backup_settings
        )
        self.backup = job_command(
            self, backup, database.password, triggers=fingerprint, after=inputs.after
        )
        migration = migration_job(stack, release)
        self.migration = job_command(
            self, migration, database.url(), triggers=[self.backup.stdout], after=[self.backup]
        )
        self.register_outputs(
            {"preMigrationBackup": self.backup.stdout, "migrationOutput": self.migration.stdout}
        )

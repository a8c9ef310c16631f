"""The astats_ops command lines the program puts into containers are ones astats_ops accepts."""

from __future__ import annotations

import pulumi
import pytest

from astats_ops.cli import build_parser
from components.backup import health_command, schedule_command
from components.config import BackupSettings, DatabaseSettings, LoggingSettings, S3Settings
from components.container import NetworkNames, StackContext, VolumeNames
from components.endpoint import DatabaseEndpoint
from components.jobs import JobSpec
from components.migration import pre_migration_backup_job
from tests.pulumi_harness import in_fresh_loop

PREFIX = ["python3", "-m", "astats_ops"]


def parse(argv: list[str]) -> object:
    assert argv[:3] == PREFIX
    return build_parser().parse_args(argv[3:])


@pytest.mark.parametrize(
    "settings",
    [
        BackupSettings(),
        BackupSettings(
            interval_minutes=60,
            keep_last=24,
            keep_daily=14,
            keep_weekly=8,
            s3=S3Settings(
                bucket="astats-prod-backups",
                prefix="astats/prod",
                endpoint_url="https://minio:9000",
            ),
        ),
    ],
)
def test_scheduler_command_parses_with_the_settings(settings: BackupSettings) -> None:
    args = parse(schedule_command(settings, "LATEST_LOG.txt"))
    assert vars(args)["interval_minutes"] == settings.interval_minutes
    assert vars(args)["keep_last"] == settings.keep_last
    assert vars(args)["rotate_max_bytes"] == settings.log_rotate_max_mb * 1024 * 1024
    assert vars(args)["s3_bucket"] == (settings.s3.bucket if settings.s3 else None)


def test_health_command_parses() -> None:
    argv = health_command(BackupSettings(interval_minutes=60))
    assert argv[0] == "CMD"
    args = parse(argv[1:])
    assert vars(args)["max_age_minutes"] >= 2 * 60


def test_pre_migration_backup_command_parses() -> None:
    stack = StackContext(
        name="dev",
        networks=NetworkNames(edge="edge", data="data"),
        volumes=VolumeNames(
            pgdata="pgdata",
            backups="backups",
            backend_logs="backend-logs",
            upstreams="upstreams",
            assets="assets",
        ),
        logging=LoggingSettings(),
    )
    settings = DatabaseSettings()

    async def job() -> JobSpec:
        database = DatabaseEndpoint(
            host="db", name=settings.name, user=settings.user, password=pulumi.Output.secret("pw")
        )
        return pre_migration_backup_job(stack, database, "img", BackupSettings())

    backup = in_fresh_loop(job)
    assert str(vars(parse(list(backup.command)))["dest"]) == "/backups"

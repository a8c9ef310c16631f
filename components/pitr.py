"""Continuous WAL archiving with pgBackRest: what the database and the scheduler share.

The server pushes each WAL segment through `pgbackrest-archive-push` (docker/postgres), the
scheduler takes the physical backups and drills them, and `astats restore --to` restores from
the same repository. All three read one configuration: the `PGBACKREST_*` environment below,
so no container carries a pgbackrest.conf. The repository lives on a volume of its own
(repo1), and with `backup.s3` in the S3 store too (repo2).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi

from components.config import BackupSettings, S3Settings

STANZA = "astats"
REPOSITORY_MOUNT = "/var/lib/pgbackrest"
REPO1_PATH = f"{REPOSITORY_MOUNT}/repo"
# The async archiver's queue: on the repository's volume, so the scheduler reads its errors.
SPOOL_PATH = f"{REPOSITORY_MOUNT}/spool"
SOCKET_DIR = "/var/run/postgresql"
PGDATA = "/var/lib/postgresql/data"
ARCHIVE_COMMAND = "pgbackrest-archive-push %p"
SECRET_CONFIG = "pgbackrest.conf"
"""The database's file of S3 keys, a pgBackRest configuration file in its secrets directory."""


def server_options(settings: BackupSettings) -> list[str]:
    """The postgres command line: WAL archived as it is written, and at least every
    `archiveTimeoutS` on an idle database."""
    return [
        "postgres",
        "-c",
        "archive_mode=on",
        "-c",
        f"archive_command={ARCHIVE_COMMAND}",
        "-c",
        f"archive_timeout={settings.pitr.archive_timeout_s}",
    ]


def pgbackrest_env(settings: BackupSettings, db_user: str) -> dict[str, str]:
    """pgBackRest's configuration, the same in every container that runs it."""
    env = {
        "PGBACKREST_STANZA": STANZA,
        "PGBACKREST_REPO1_PATH": REPO1_PATH,
        "PGBACKREST_REPO1_RETENTION_FULL": str(settings.pitr.retention_full),
        "PGBACKREST_PG1_PATH": PGDATA,
        "PGBACKREST_PG1_SOCKET_PATH": SOCKET_DIR,
        "PGBACKREST_PG1_USER": db_user,
        "PGBACKREST_ARCHIVE_ASYNC": "y",
        "PGBACKREST_SPOOL_PATH": SPOOL_PATH,
        "PGBACKREST_LOCK_PATH": "/tmp/pgbackrest",
        "PGBACKREST_LOG_LEVEL_FILE": "off",
        "PGBACKREST_LOG_LEVEL_CONSOLE": "warn",
        # lz4 costs a fraction of gzip's CPU; restores are bound by the copy, not the codec.
        "PGBACKREST_COMPRESS_TYPE": "lz4",
        "PGBACKREST_START_FAST": "y",
        "PGBACKREST_PROCESS_MAX": "2",
    }
    s3 = settings.offsite_archive
    if s3 is not None:
        env |= offsite_env(s3, settings.pitr.retention_full)
    return dict(sorted(env.items()))


def offsite_env(s3: S3Settings, retention_full: int) -> dict[str, str]:
    """repo2 in the S3 store, beside the dumps' prefix; its keys come from the secrets."""
    endpoint = urlsplit(s3.endpoint_url or f"https://s3.{s3.region}.amazonaws.com")
    prefix = s3.prefix.strip("/")
    env = {
        "PGBACKREST_REPO2_TYPE": "s3",
        "PGBACKREST_REPO2_PATH": f"/{prefix}/pgbackrest" if prefix else "/pgbackrest",
        "PGBACKREST_REPO2_S3_BUCKET": s3.bucket,
        "PGBACKREST_REPO2_S3_ENDPOINT": endpoint.hostname or "",
        "PGBACKREST_REPO2_S3_REGION": s3.region,
        "PGBACKREST_REPO2_RETENTION_FULL": str(retention_full),
    }
    # A store that does not answer: pgBackRest tries each request about four times per
    # io-timeout (60 s by default), and a push reads two files first, so its own error, naming
    # repo2, would come only after minutes, long after the push gave up (archive-timeout) with
    # a message of its own. 10 s per request and 120 s per push name it within a push.
    env["PGBACKREST_IO_TIMEOUT"] = "10"
    env["PGBACKREST_ARCHIVE_TIMEOUT"] = "120"
    if s3.endpoint_url:
        # S3-compatible stores are addressed by path, not by a host name per bucket.
        env["PGBACKREST_REPO2_S3_URI_STYLE"] = "path"
        if endpoint.port:
            env["PGBACKREST_REPO2_STORAGE_PORT"] = str(endpoint.port)
    return env


@dataclass(frozen=True)
class OffsiteKeys:
    access_key_id: pulumi.Output[str]
    secret_access_key: pulumi.Output[str]

    def env_files(self) -> dict[str, pulumi.Output[str]]:
        """For a launcher-started container: one secret file per pgBackRest variable."""
        return {
            "PGBACKREST_REPO2_S3_KEY": self.access_key_id,
            "PGBACKREST_REPO2_S3_KEY_SECRET": self.secret_access_key,
        }

    def config_file(self) -> pulumi.Output[str]:
        """For the database (started by the image's own entrypoint): a pgBackRest
        configuration file that holds only the keys; PGBACKREST_CONFIG names it."""
        return pulumi.Output.secret(
            pulumi.Output.format(
                "[global]\nrepo2-s3-key={0}\nrepo2-s3-key-secret={1}\n",
                self.access_key_id,
                self.secret_access_key,
            )
        )

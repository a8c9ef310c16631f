"""Fixtures for the astats_ops tests: a real throwaway PostgreSQL 15, S3 via moto."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.helpers import SEED_SQL, grant_createdb
from tests.support.postgres import PostgresCluster, free_tcp_port, postgres_cluster, skip_or_fail


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresCluster]:
    skip_or_fail()
    with postgres_cluster() as cluster:
        grant_createdb(cluster)
        yield cluster


@pytest.fixture
def seeded(pg: PostgresCluster) -> PostgresCluster:
    """The shared cluster with the application database reset to the seed data."""
    pg.psql(SEED_SQL)
    return pg


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "backups"
    folder.mkdir()
    return folder


@pytest.fixture
def moto_server() -> Iterator[str]:
    """An S3 endpoint (moto) on 127.0.0.1 for the CLI run as a subprocess."""
    from moto.server import ThreadedMotoServer

    port = free_tcp_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_credentials_file(tmp_path: Path) -> dict[str, str]:
    """Environment that gives boto3 credentials only through a shared credentials file."""
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = backupkey\naws_secret_access_key = backupsecret\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-aws-config")
    return env

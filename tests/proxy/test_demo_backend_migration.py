"""The demo backend's Alembic migration against a real PostgreSQL 15, run the way the
migration job runs it: `alembic upgrade head` from the image's WORKDIR with DATABASE_URL set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from tests.proxy import harness
from tests.support import postgres

REVISION = "0001_cockpit_notes"


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.PostgresCluster]:
    postgres.skip_or_fail()
    with postgres.postgres_cluster() as pg:
        yield pg


def _database_url(pg: postgres.PostgresCluster) -> str:
    return (
        f"postgresql://{pg.user}:{quote(pg.password, safe='')}@/{pg.database}"
        f"?host={pg.host}&port={pg.port}"
    )


def _alembic(
    *args: str, env: dict[str, str], cwd: str = str(harness.BACKEND_DIR)
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _env(pg: postgres.PostgresCluster) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": _database_url(pg)}


def _tables(pg: postgres.PostgresCluster) -> set[str]:
    rows = pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return set(rows.split())


def test_upgrade_head_creates_the_schema_and_is_repeatable(
    cluster: postgres.PostgresCluster,
) -> None:
    first = _alembic("upgrade", "head", env=_env(cluster))
    assert first.returncode == 0, first.stderr
    assert _tables(cluster) == {"alembic_version", "cockpit_notes"}
    assert cluster.psql("SELECT version_num FROM alembic_version").strip() == REVISION
    cluster.psql("INSERT INTO cockpit_notes (body) VALUES ('first note')")

    again = _alembic("upgrade", "head", env=_env(cluster))
    assert again.returncode == 0, again.stderr
    assert cluster.psql("SELECT count(*) FROM cockpit_notes").strip() == "1"


def test_the_running_backend_sees_the_migrated_schema(
    cluster: postgres.PostgresCluster,
) -> None:
    assert _alembic("upgrade", "head", env=_env(cluster)).returncode == 0
    port = harness.free_port()
    secret = "not-a-real-secret-value"
    with harness.run_backend(
        port, env={"DATABASE_URL": _database_url(cluster), "SECRET_KEY": secret}
    ):
        health = httpx.get(f"http://127.0.0.1:{port}/health")
        state = httpx.get(f"http://127.0.0.1:{port}/api/db").json()
    assert health.json()["secret_key_configured"] is True
    assert secret not in health.text
    assert cluster.password not in health.text
    assert state["revision"] == REVISION


def test_downgrade_then_upgrade_round_trips(cluster: postgres.PostgresCluster) -> None:
    assert _alembic("upgrade", "head", env=_env(cluster)).returncode == 0
    down = _alembic("downgrade", "base", env=_env(cluster))
    assert down.returncode == 0, down.stderr
    assert "cockpit_notes" not in _tables(cluster)
    up = _alembic("upgrade", "head", env=_env(cluster))
    assert up.returncode == 0, up.stderr
    assert "cockpit_notes" in _tables(cluster)


def test_migration_config_works_from_any_directory(
    cluster: postgres.PostgresCluster, tmp_path: object
) -> None:
    assert _alembic("upgrade", "head", env=_env(cluster)).returncode == 0
    ini = str(harness.BACKEND_DIR / "alembic.ini")
    result = _alembic("-c", ini, "current", env=_env(cluster), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert REVISION in result.stdout


def test_missing_database_url_fails_with_its_name() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = _alembic("upgrade", "head", env=env)
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


FAULT_PROBE = """
import json, sys
from fastapi.testclient import TestClient
from app.main import app
with TestClient(app) as client:
    print(json.dumps([client.get(p).status_code for p in ("/health", "/api/whoami")]))
"""


@pytest.mark.parametrize(("fault", "statuses"), [("broken", [500, 500]), ("", [200, 200])])
def test_the_demo_backend_can_be_a_broken_release_for_rollout_drills(
    fault: str, statuses: list[int]
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FAULT_PROBE],
        cwd=harness.BACKEND_DIR,
        env={**os.environ, "DEMO_FAULT": fault, "DEMO_START_DELAY_S": "0.2"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == statuses

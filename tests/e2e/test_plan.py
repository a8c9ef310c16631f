"""`astats plan` on a stack of its own, deployed by the real `pulumi up`: it runs the real
preview and says what a rollout would do, with its exit code (0 nothing, 2 changes, 3 danger).
Each case changes the config or the migrations, plans, and puts them back; nothing is rolled out.

With ASTATS_CAPTURE_PLAN=1 each case's preview JSON is also saved, sanitized, as the fixtures
of tests/console/test_plan.py.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.plan_fixtures import save
from tests.e2e.conftest import stack_of_its_own
from tests.e2e.engine import Project, Result
from tests.e2e.images import StandIns
from tests.e2e.test_rollout import write_migration

CAPTURE = os.environ.get("ASTATS_CAPTURE_PLAN") == "1"
MEASURED: dict[str, float] = {}


class Planned:
    def __init__(self, project: Project, port: int) -> None:
        self.project, self.port = project, port

    def plan(self, case: str, *flags: str) -> Result:
        """`astats --stack S plan` from the project directory, timed beside a bare preview."""
        argv = [sys.executable, "-m", "astats_console", "--stack", self.project.stack, "plan"]
        started = time.monotonic()
        done = subprocess.run(
            [*argv, *flags],
            cwd=self.project.root,
            env=self.project.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        MEASURED[f"{case}_astats_plan_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        bare = self.project.run("preview", "--json", check=False)
        MEASURED[f"{case}_pulumi_preview_s"] = round(time.monotonic() - started, 1)
        if CAPTURE and not flags:
            save(case, json.loads(bare.stdout), self.project.stack, self.port)
        return Result(argv, done.returncode, done.stdout, done.stderr)

    def plan_with(self, case: str, key: str, value: str, *, secret: bool = False) -> Result:
        """The plan with one setting changed; the stack's config file is put back after."""
        config = self.project.root / f"Pulumi.{self.project.stack}.yaml"
        kept = config.read_text()
        self.project.set_config(key, value, secret=secret, path=True)
        try:
            return self.plan(case)
        finally:
            config.write_text(kept)

    @property
    def backend_context(self) -> Path:
        return self.project.root / "examples" / "demo-app" / "backend"


@pytest.fixture(scope="module")
def planned(images: StandIns) -> Iterator[Planned]:
    with stack_of_its_own(images, "e2e-plan") as (project, port):
        project.up()
        yield Planned(project, port)


def test_a_stack_as_deployed_plans_nothing_and_exits_0(planned: Planned) -> None:
    result = planned.plan("noop")
    assert result.returncode == 0, result.output
    assert "nothing to do" in result.stdout


def test_an_env_change_replaces_the_backend_behind_the_switch(planned: Planned) -> None:
    result = planned.plan_with("backend-env", "astats:backend.env.PLAN_GREETING", "hello")
    assert result.returncode == 2, result.output
    assert "backend is replaced create-before-delete" in result.stdout
    assert "no request is dropped (envs changed)" in result.stdout
    assert "no backup or migration runs" in result.stdout


def test_a_new_migration_names_the_backup_the_migration_and_the_new_file(
    planned: Planned,
) -> None:
    migration = planned.backend_context / "migrations" / "versions" / "0002_plan_releases.py"
    write_migration(
        planned.backend_context,
        "0002_plan_releases",
        "0001_cockpit_notes",
        'op.create_table("plan_releases", sa.Column("id", sa.Integer, primary_key=True))',
    )
    try:
        result = planned.plan("new-migration")
        markdown = planned.plan("new-migration-markdown", "--markdown")
    finally:
        migration.unlink()
    assert result.returncode == 2, result.output
    assert "a verified backup, then the migration (alembic upgrade head) runs" in result.stdout
    assert "new migrations after the live head 0001_cockpit_notes: 1" in result.stdout
    assert "0002_plan_releases (0002_plan_releases.py)" in result.stdout
    assert markdown.returncode == 2
    assert markdown.stdout.startswith("### `astats plan`")


def test_a_new_data_volume_is_danger_and_exits_3(planned: Planned) -> None:
    other = f"{planned.project.stack}-other-data"
    result = planned.plan_with("data-volume", "astats:database.volumeName", other)
    assert result.returncode == 3, result.output
    assert "DANGER: data volume pgdata" in result.stdout
    assert "db is replaced delete-before-replace: refused connections for about" in result.stdout
    assert "an estimate" in result.stdout


def test_a_rotated_secret_is_named_by_key_only(planned: Planned) -> None:
    value = secrets.token_urlsafe(32)
    result = planned.plan_with("secret-rotation", "astats:secretKey", value, secret=True)
    assert result.returncode == 2, result.output
    assert "secrets changed since the last update (keys only): astats:secretKey" in result.stdout
    assert value not in result.output


def test_report_the_plan_timings() -> None:
    print("\nastats plan timings:", json.dumps(MEASURED, indent=2))

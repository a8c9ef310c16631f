"""One command back, on the real engine: release r1, release r2 with a reversible migration,
rows written after r2, then `astats rollback --yes` under a bounded loopback load: the schema is
back at r1's head, r1's image serves, the rows are kept, no request fails, and a preview plans
nothing. Then, unpinned, r3 brings an irreversible migration: the rollback refuses and names it,
and with `--restore-data` restores the data to before it ran and says how much is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import archiving_quickly, stack_of_its_own
from tests.e2e.engine import Project, running
from tests.e2e.images import StandIns
from tests.e2e.traffic import SteadyLoad

MEASURED: dict[str, object] = {}


@dataclass
class Stack:
    project: Project
    url: str

    @property
    def name(self) -> str:
        return self.project.stack

    @property
    def versions(self) -> Path:
        return self.project.root / "examples/demo-app/backend/migrations/versions"

    def astats(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "astats_console", "--stack", self.name, *args],
            cwd=self.project.root,
            env=self.project.env | {"PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )

    def releases(self) -> list[dict[str, Any]]:
        shown = self.astats("releases", "--json")
        assert shown.returncode == 0, shown.stderr
        return list(json.loads(shown.stdout))

    def sql(self, statement: str) -> str:
        done = self.astats("psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", statement)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def revision(self) -> str:
        return str(httpx.get(f"{self.url}/api/db", timeout=10).json()["revision"])

    def backend_image(self) -> str:
        return subprocess.run(
            ["docker", "inspect", "-f", "{{.Image}}", running(self.name, "backend")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def add_migration(self, revision: str, down: str, upgrade: str, downgrade: str) -> None:
        (self.versions / f"{revision}.py").write_text(
            f'"""{revision}."""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f"revision = {revision!r}\ndown_revision = {down!r}\n"
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade() -> None:\n    {upgrade}\n\n\n"
            f"def downgrade() -> None:\n    {downgrade}\n"
        )


def image_id(reference: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", reference],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def stack(images: StandIns) -> Iterator[Stack]:
    with stack_of_its_own(images, "e2e-rb", archiving_quickly) as (project, port):
        try:
            project.up()
            yield Stack(project, f"http://127.0.0.1:{port}")
        finally:
            print(f"\nrollback measurements: {json.dumps(MEASURED)}")


def test_a_rollback_takes_code_and_schema_back_and_keeps_the_rows(stack: Stack) -> None:
    r1 = stack.releases()
    assert len(r1) == 1 and r1[0]["live"], r1
    assert stack.revision() == "0001_cockpit_notes"

    stack.add_migration(
        "0002_note_tags",
        "0001_cockpit_notes",
        'op.add_column("cockpit_notes", sa.Column("tag", sa.Text))',
        'op.drop_column("cockpit_notes", "tag")',
    )
    stack.project.up()
    r2 = stack.releases()
    assert [r["alembic_head"] for r in r2] == ["0002_note_tags", "0001_cockpit_notes"]
    stack.sql("INSERT INTO cockpit_notes (body, tag) VALUES ('after r2', NULL)")

    with SteadyLoad(stack.url, ("/health", "/api/db", "/"), timeout_s=2) as load:
        started = time.monotonic()
        done = stack.astats("rollback", "--yes")
        wall_s = time.monotonic() - started
        time.sleep(2)
    report = load.report
    print("\n" + done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    MEASURED["rollback_s"] = round(wall_s, 1)
    MEASURED["requests"] = report.requests
    MEASURED["failed"] = len(report.failures)
    assert report.requests > 50
    assert report.failures == [], report.failures[:10]

    assert stack.revision() == "0001_cockpit_notes"
    assert stack.backend_image() == image_id(r1[0]["backend"]["release_image"])
    assert stack.sql("SELECT body FROM cockpit_notes WHERE body = 'after r2'") == "after r2"
    assert "unpin" in done.stdout or "go forward again" in done.stdout
    after = stack.releases()
    assert after[0]["live"] and after[0]["alembic_head"] == "0001_cockpit_notes", after[0]
    preview = stack.project.preview("--diff", "--expect-no-changes", check=False)
    assert preview.returncode == 0, preview.output[-3000:]


def test_an_irreversible_migration_is_refused_then_undone_by_restoring_the_data(
    stack: Stack,
) -> None:
    stack.project.remove_config("astats:releases.pin", path=True)
    stack.add_migration(
        "0003_drop_tags",
        "0002_note_tags",
        'op.drop_column("cockpit_notes", "tag")',
        "pass",
    )
    stack.project.up()
    assert stack.revision() == "0003_drop_tags"
    stack.sql("INSERT INTO cockpit_notes (body) VALUES ('after r3')")

    refused = stack.astats("rollback", "--yes")
    assert refused.returncode == 1
    assert "refusing: migration 0003_drop_tags (0003_drop_tags.py) cannot be undone" in (
        refused.stderr
    ), refused.stderr
    assert stack.revision() == "0003_drop_tags"

    done = stack.astats("rollback", "--yes", "--restore-data")
    print("\n" + done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "are lost" in done.stdout and "the writes of the last" in done.stdout
    assert stack.revision() == "0001_cockpit_notes"
    assert stack.sql("SELECT count(*) FROM cockpit_notes WHERE body = 'after r3'") == "0"
    assert stack.sql("SELECT count(*) FROM cockpit_notes WHERE body = 'after r2'") == "1"
    preview = stack.project.preview("--diff", "--expect-no-changes", check=False)
    assert preview.returncode == 0, preview.output[-3000:]

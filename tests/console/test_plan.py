"""`astats plan` tells what a rollout will do from the real engine's preview JSON (captured in
tests/console/fixtures/plan by tests/e2e/test_plan.py): backups and migrations, how each
service is replaced, data at risk, secrets by key; exit 0 nothing, 2 changes, 3 danger."""

from __future__ import annotations

from pathlib import Path

import pytest

from astats_console.plan import (
    CHANGES,
    DANGER,
    NOTHING,
    Facts,
    Revision,
    Schema,
    build_plan,
    duration_s,
    gap_estimate,
    render_markdown,
    render_text,
)
from astats_console.plan_source import (
    backend_config,
    changed_secrets,
    last_deployed_config,
    place,
    read_revisions,
    versions_dir,
)
from tests.console.plan_fixtures import FIXTURES, load

REPO = Path(__file__).resolve().parents[2]
FIRST = Revision("0001_cockpit_notes", (), "0001_cockpit_notes.py")
NEW = Revision("0002_plan_releases", ("0001_cockpit_notes",), "0002_plan_releases.py")
AT_FIRST = Schema(("0001_cockpit_notes",))
NO_SECRET_CHANGED = Facts(AT_FIRST, ())


def plan_of(name: str, facts: Facts = NO_SECRET_CHANGED) -> tuple[int, str, str]:
    plan = build_plan("plan", load(name), facts)
    return plan.exit_code, render_text(plan), render_markdown(plan)


def test_a_preview_with_nothing_to_do_exits_0_and_says_so() -> None:
    code, text, markdown = plan_of("noop")
    assert code == NOTHING
    assert "nothing to do" in text
    assert "replaced" not in text and "migration" not in text
    assert "nothing to do" in markdown


def test_an_env_change_replaces_the_backend_behind_the_switch_without_a_backup() -> None:
    code, text, _ = plan_of("backend-env")
    assert code == CHANGES
    assert (
        "backend is replaced create-before-delete: the new container takes traffic once "
        "healthy, no request is dropped (envs changed)"
    ) in text
    assert "no backup or migration runs" in text
    assert "DANGER" not in text and "delete-before-replace" not in text


def test_a_new_migration_says_a_backup_and_the_migration_run_and_names_the_new_file() -> None:
    facts = Facts(place([NEW, FIRST], ("0001_cockpit_notes",)), ())
    code, text, markdown = plan_of("new-migration", facts)
    assert code == CHANGES
    assert "a verified backup, then the migration (alembic upgrade head) runs" in text
    assert "new migrations after the live head 0001_cockpit_notes: 1" in text
    assert "0002_plan_releases (0002_plan_releases.py)" in text
    assert "0001_cockpit_notes (" not in text
    assert "rebuilt: backend-image" in text
    assert "(image, labels changed)" in text
    assert "  - `0002_plan_releases (0002_plan_releases.py)`" in markdown


def test_a_database_out_of_reach_is_said_and_every_migration_file_is_listed_unplaced() -> None:
    why = "the live database cannot be read (the database of stack 'plan' is not running)"
    facts = Facts(place([NEW, FIRST], None, why), ())
    _, text, _ = plan_of("new-migration", facts)
    assert f"{why}; these migration files cannot be placed against it: 2" in text
    assert text.index("0001_cockpit_notes (") < text.index("0002_plan_releases (")


def test_replacing_the_data_volume_is_danger_exit_3_with_the_outage_estimated() -> None:
    code, text, markdown = plan_of("data-volume")
    assert code == DANGER
    headline, first = text.splitlines()[:2]
    assert "DANGER, data at risk" in headline
    assert first.startswith("  DANGER: data volume pgdata (astats-plan-pgdata -> ")
    assert "starts on a new, empty volume; data at risk" in first
    # The database's healthcheck in the new state: 2 s interval, 30 s start, 25 x (2 s + 5 s).
    assert (
        "db is replaced delete-before-replace: refused connections for about 2 s, at most 205 s"
        " (an estimate from its healthcheck's interval and budget) (pgdata is replaced)"
    ) in text
    assert "scheduler is replaced delete-before-replace: down for about 15 s, at most 85 s" in text
    assert ":rotating_light: **data volume pgdata" in markdown


def test_a_rotated_secret_is_named_by_its_key_and_never_by_its_value() -> None:
    code, text, markdown = plan_of("secret-rotation", Facts(AT_FIRST, ("astats:secretKey",)))
    assert code == CHANGES
    assert "secrets changed since the last update (keys only): astats:secretKey" in text
    assert "backend is replaced create-before-delete" in text
    assert "astats:secretKey" in markdown


def test_secrets_that_cannot_be_compared_are_said_to_be_unknown() -> None:
    facts = Facts(AT_FIRST, None, "no successful update in the stack's history to compare with")
    _, text, _ = plan_of("secret-rotation", facts)
    assert "secrets: cannot say which changed (no successful update" in text


def test_secret_keys_are_compared_by_digest_and_only_astats_secrets_count() -> None:
    now = {
        "astats:secretKey": {"value": "new-value", "secret": True},
        "astats:dbPassword": {"value": "same", "secret": True},
        "astats:backupS3AccessKeyId": {"value": "added", "secret": True},
        "astats:publicHost": {"value": "example.org", "secret": False},
        "other:token": {"value": "x", "secret": True},
    }
    deployed = {
        "astats:secretKey": {"value": "old-value", "secret": True},
        "astats:dbPassword": {"value": "same", "secret": True},
        "astats:publicHost": {"value": "localhost", "secret": False},
        "other:token": {"value": "y", "secret": True},
    }
    assert changed_secrets(now, deployed) == ("astats:backupS3AccessKeyId", "astats:secretKey")


def test_the_last_successful_update_is_the_one_compared_with() -> None:
    history = [
        {"kind": "update", "result": "failed", "config": {"a": 1}},
        {"kind": "refresh", "result": "succeeded", "config": {"b": 2}},
        {"kind": "update", "result": "succeeded", "config": {"c": 3}},
    ]
    assert last_deployed_config(history) == {"c": 3}
    assert last_deployed_config(history[:2]) is None


def test_the_demo_apps_versions_directory_is_found_from_the_previews_config() -> None:
    directory = versions_dir(REPO, backend_config(load("new-migration")))
    assert directory == REPO / "examples/demo-app/backend/migrations/versions"
    assert [r.id for r in read_revisions(directory)][:1] == ["0001_cockpit_notes"]


def test_migration_files_come_in_upgrade_order_after_the_live_head(tmp_path: Path) -> None:
    files = {
        "b.py": 'revision = "b"\ndown_revision = "a"\n',
        "a.py": 'revision: str = "a"\ndown_revision: str | None = None\n',
        "c.py": 'revision = "c"\ndown_revision = ("b",)\n',
        "notes.py": "x = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    revisions = read_revisions(tmp_path)
    assert [r.id for r in place(revisions, ("a",)).pending] == ["b", "c"]
    assert [r.id for r in place(revisions, ()).pending] == ["a", "b", "c"]
    assert place(revisions, ("c",)).pending == ()
    lost = place(revisions, ("zz",))
    assert "zz is not among the migration files" in lost.why_unknown
    assert [r.id for r in lost.unplaced] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("2s", 2), ("1m30s", 90), ("500ms", 1), ("", 0), ("1h", 3600)]
)
def test_docker_durations(text: str, seconds: int) -> None:
    assert duration_s(text) == seconds


def test_the_gap_is_one_interval_likely_and_the_healthchecks_budget_at_most() -> None:
    assert gap_estimate(None) is None
    assert gap_estimate({"interval": "10s", "timeout": "5s", "retries": 3}) == (10, 45)


def test_the_fixtures_hold_nothing_of_the_machine_or_a_secret() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        text = path.read_text()
        for leak in ("/tmp/", "/root/", "stackTrace", "sourcePosition", "v1:", "e2e-"):
            assert leak not in text, f"{path.name} holds {leak!r}"
        config = load(path.stem)["config"]
        assert config["astats:secretKey"] == config["astats:dbPassword"] == "[secret]"


def test_a_failed_preview_exits_1_with_the_engines_error() -> None:
    preview = load("noop") | {
        "diagnostics": [{"severity": "error", "message": "unable to replace protected resource"}]
    }
    plan = build_plan("plan", preview, NO_SECRET_CHANGED)
    assert plan.exit_code == 1
    assert "preview error: unable to replace protected resource" in render_text(plan)

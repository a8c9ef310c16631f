"""The pure parts of releases and rollbacks: which migrations can be undone, which release is
the previous one, how a release meets Pulumi's history, where --restore-data goes back to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from astats_console.errors import ConsoleError
from astats_console.migrations import Migration, downgrade_problem, parse_listing
from astats_console.releases import Release, live_release, with_history
from astats_console.rollback import Plan, choose, restore_point

HEADER = (
    "from alembic import op\nimport sqlalchemy as sa\n\n\ndef upgrade() -> None:\n    pass\n\n\n"
)


@pytest.mark.parametrize(
    ("downgrade", "problem"),
    [
        ('def downgrade() -> None:\n    op.drop_column("t", "c")\n', None),
        ('def downgrade():\n    """Undo."""\n    op.drop_table("t")\n', None),
        ("def downgrade() -> None:\n    pass\n", "its downgrade() does nothing"),
        ('def downgrade() -> None:\n    """Nothing to undo."""\n', "its downgrade() does nothing"),
        ("def downgrade() -> None:\n    ...\n", "its downgrade() does nothing"),
        (
            "def downgrade() -> None:\n    raise NotImplementedError\n",
            "its downgrade() raises NotImplementedError",
        ),
        (
            'def downgrade() -> None:\n    if True:\n        raise NotImplementedError("no")\n',
            "its downgrade() raises NotImplementedError",
        ),
        ("", "it has no downgrade()"),
    ],
)
def test_a_downgrade_is_real_only_when_it_does_something(
    downgrade: str, problem: str | None
) -> None:
    assert downgrade_problem(HEADER + downgrade) == problem


def test_the_backends_listing_is_parsed_from_its_last_line() -> None:
    listing = (
        'a warning\n[{"revision": "0002", "path": "/app/m/versions/0002_x.py", "source": "x"}]'
    )
    assert parse_listing(listing) == [Migration("0002", "/app/m/versions/0002_x.py", "x")]
    assert parse_listing(listing)[0].file == "0002_x.py"
    with pytest.raises(ConsoleError, match="unreadable"):
        parse_listing("Traceback ...")


def release(name: str, backend: str, frontend: str = "f1", backup: str | None = None) -> Release:
    return Release(
        name=name,
        backend_tag=f"astats-s-backend:release-{name}",
        frontend_tag=f"astats-s-frontend:release-{name}",
        backend_image=backend,
        frontend_image=frontend,
        backend_reference="astats-s-backend:latest",
        frontend_reference="astats-s-frontend:latest",
        alembic_head=None,
        backup=backup,
        backend_marker_id=f"marker-{name}",
    )


R1 = release("20261201T100000Z", "b1")
R2 = release("20261202T100000Z", "b2", backup="/backups/astats-20261202T095950Z.dump")
R3 = release("20261203T100000Z", "b2", frontend="f2")
NEWEST_FIRST = [R3, R2, R1]


def test_the_previous_release_is_the_newest_older_one_that_runs_something_else() -> None:
    assert choose(NEWEST_FIRST, R3, None) == R2
    assert choose(NEWEST_FIRST, R2, None) == R1
    assert choose(NEWEST_FIRST, R3, R1.name) == R1
    with pytest.raises(ConsoleError, match="is the live one"):
        choose(NEWEST_FIRST, R3, R3.name)
    with pytest.raises(ConsoleError, match="no release 'x' here"):
        choose(NEWEST_FIRST, R3, "x")
    with pytest.raises(ConsoleError, match="no earlier release"):
        choose(NEWEST_FIRST, R1, None)
    with pytest.raises(ConsoleError, match="no release is recorded"):
        choose([], None, None)


def test_the_live_release_is_found_by_the_image_or_the_release_image_it_runs() -> None:
    assert live_release(NEWEST_FIRST, "b1") == R1
    assert live_release(NEWEST_FIRST, "marker-20261202T100000Z") == R2
    assert live_release(NEWEST_FIRST, "other") is None


def test_a_release_meets_the_update_it_was_recorded_in() -> None:
    history = [
        {
            "startTime": "2026-12-02T09:59:00.000Z",
            "endTime": "2026-12-02T10:00:30.000Z",
            "environment": {"git.head": "abc123"},
        },
        {
            "startTime": "2026-12-01T09:59:00.000Z",
            "endTime": "2026-12-01T10:00:30.000Z",
            "environment": {},
        },
    ]
    matched = with_history([R2, R1, R3], history)
    assert [(r.update, r.commit) for r in matched] == [(2, "abc123"), (1, None), (None, None)]


def test_restoring_data_goes_back_to_the_next_releases_pre_migration_backup() -> None:
    assert restore_point(NEWEST_FIRST, R1) == datetime(2026, 12, 2, 9, 59, 50, tzinfo=UTC)
    assert restore_point(NEWEST_FIRST, R2) is None  # R3's has no backup recorded


def test_the_plan_says_what_is_lost_with_restore_data() -> None:
    undo = [Migration("0003", "/v/0003_drop.py", "def downgrade():\n    pass\n")]
    plan = Plan(R1, R3, "0003", undo, datetime(2026, 12, 3, 9, 0, tzinfo=UTC))
    lines = plan.lines(datetime(2026, 12, 3, 10, 0, tzinfo=UTC))
    assert any("the writes of the last 60 minutes are lost" in line for line in lines)
    assert any("before 0003_drop.py ran" in line for line in lines)
    assert lines[-1].startswith("  pin: astats:releases.pin (unpin:")

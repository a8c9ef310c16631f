"""Retention is a pure function; its promises hold for any set of backups."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astats_ops.retention import Policy, Snapshot, plan
from tests.ops.helpers import make_backup_files, run_cli

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

snapshot_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=120 * 24 * 4), st.booleans()),
    max_size=60,
    unique_by=lambda item: item[0],
).map(
    lambda items: [
        Snapshot(f"b{minutes:06d}", EPOCH + timedelta(minutes=15 * minutes), verified)
        for minutes, verified in items
    ]
)
policies = st.builds(
    Policy,
    keep_last=st.integers(0, 10),
    keep_daily=st.integers(0, 10),
    keep_weekly=st.integers(0, 8),
)


def newest_first(snapshots: list[Snapshot]) -> list[Snapshot]:
    return sorted(snapshots, key=lambda s: s.created, reverse=True)


@given(snapshot_lists, policies)
def test_keep_and_delete_partition_the_backups(snapshots: list[Snapshot], policy: Policy) -> None:
    result = plan(snapshots, policy)
    kept = {s.key for s in result.keep}
    deleted = {s.key for s in result.delete}
    assert kept.isdisjoint(deleted)
    assert kept | deleted == {s.key for s in snapshots}


@given(snapshot_lists, policies)
def test_the_newest_verified_backup_is_always_kept(
    snapshots: list[Snapshot], policy: Policy
) -> None:
    verified = [s for s in newest_first(snapshots) if s.verified]
    if verified:
        assert verified[0] in plan(snapshots, policy).keep


@given(snapshot_lists, policies)
def test_the_last_n_are_kept(snapshots: list[Snapshot], policy: Policy) -> None:
    kept = set(plan(snapshots, policy).keep)
    assert set(newest_first(snapshots)[: policy.keep_last]) <= kept


@given(snapshot_lists, policies)
def test_every_recent_day_and_week_keeps_a_backup(
    snapshots: list[Snapshot], policy: Policy
) -> None:
    kept = plan(snapshots, policy).keep
    days = sorted({s.created.date() for s in snapshots}, reverse=True)[: policy.keep_daily]
    weeks = sorted({s.created.isocalendar()[:2] for s in snapshots}, reverse=True)
    for day in days:
        in_day = [s for s in snapshots if s.created.date() == day]
        kept_in_day = [s for s in kept if s.created.date() == day]
        assert kept_in_day
        if any(s.verified for s in in_day):
            assert any(s.verified for s in kept_in_day)
    for week in weeks[: policy.keep_weekly]:
        assert any(s.created.isocalendar()[:2] == week for s in kept)


@given(snapshot_lists, policies)
def test_never_keeps_more_than_the_policy_needs(snapshots: list[Snapshot], policy: Policy) -> None:
    kept = plan(snapshots, policy).keep
    assert len(kept) <= policy.keep_last + policy.keep_daily + policy.keep_weekly + 1
    if policy.keep_last + policy.keep_daily + policy.keep_weekly == 0:
        assert len(kept) <= 1


@given(snapshot_lists, policies)
def test_pruning_again_deletes_nothing(snapshots: list[Snapshot], policy: Policy) -> None:
    first = plan(snapshots, policy)
    second = plan(first.keep, policy)
    assert second.keep == first.keep
    assert second.delete == ()


@given(snapshot_lists, policies)
@settings(max_examples=50)
def test_order_of_input_does_not_matter(snapshots: list[Snapshot], policy: Policy) -> None:
    assert plan(snapshots, policy) == plan(list(reversed(snapshots)), policy)


def test_a_pause_in_backups_does_not_shrink_daily_retention() -> None:
    """Days count among days that have backups, so an old series keeps its dailies."""
    snapshots = [Snapshot(f"d{i}", EPOCH + timedelta(days=i), True) for i in range(10)]
    kept = plan(snapshots, Policy(keep_last=1, keep_daily=5)).keep
    assert [s.key for s in kept] == ["d9", "d8", "d7", "d6", "d5"]


def test_newest_unverified_backups_do_not_push_out_the_last_good_one() -> None:
    good = Snapshot("good", EPOCH, True)
    broken = [Snapshot(f"bad{i}", EPOCH + timedelta(hours=i + 1), False) for i in range(5)]
    kept = plan([good, *broken], Policy(keep_last=2)).keep
    assert good in kept
    assert len(kept) == 3


def test_negative_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="keep_daily"):
        Policy(keep_last=1, keep_daily=-1)


def test_prune_cli_deletes_dump_and_sidecar_together(dest: Path) -> None:
    stamps = [f"202401{day:02d}T0{hour}0000Z" for day in range(1, 6) for hour in (1, 5)]
    make_backup_files(dest, stamps, broken={"20240105T050000Z"})
    (dest / "notes.txt").write_text("not a backup")
    before = sorted(p.name for p in dest.iterdir())

    dry = run_cli(
        "prune",
        "--dest",
        dest,
        "--keep-last",
        "1",
        "--keep-daily",
        "2",
        "--dry-run",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert dry.returncode == 0, dry.stderr
    assert sorted(p.name for p in dest.iterdir()) == before
    assert dry.stdout.count("would delete") == 7

    real = run_cli(
        "prune",
        "--dest",
        dest,
        "--keep-last",
        "1",
        "--keep-daily",
        "2",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert real.returncode == 0, real.stderr
    remaining = sorted(p.name for p in dest.iterdir())
    assert remaining == [
        "astats-20240104T050000Z.dump",
        "astats-20240104T050000Z.dump.sha256",
        "astats-20240105T010000Z.dump",
        "astats-20240105T010000Z.dump.sha256",
        "astats-20240105T050000Z.dump",
        "astats-20240105T050000Z.dump.sha256",
        "notes.txt",
    ]
    assert [line.split()[-1] for line in dry.stdout.splitlines()] == [
        line.split()[-1] for line in real.stdout.splitlines()
    ]


def test_prune_removes_only_stale_partial_files(dest: Path) -> None:
    make_backup_files(dest, ["20240101T000000Z"], broken=set())
    stale = dest / ".astats-20240102T000000Z.dump.partial"
    fresh = dest / ".astats-20240103T000000Z.dump.partial"
    foreign = dest / ".something-else.partial"
    for path in (stale, fresh, foreign):
        path.write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    os.utime(foreign, (two_days_ago, two_days_ago))

    result = run_cli("prune", "--dest", dest, "--keep-last", "3", env={"PATH": "/usr/bin:/bin"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deleted stale {stale}"
    assert not stale.exists() and fresh.exists() and foreign.exists()
    assert (dest / "astats-20240101T000000Z.dump").exists()

"""What ``status``, ``backups`` and ``watch`` make of the scheduler's ``pitr`` block: WAL
archiving and physical backups, read tolerantly; each problem its own ATTENTION line and watch
report; a stack without archiving shows nothing new."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console, RenderableType

from astats_console import backups
from astats_console.archiving import (
    PENDING_SEGMENTS_LIMIT,
    PG_WAL_LIMIT_BYTES,
    pitr_problems,
)
from astats_console.backups import (
    BackupEntry,
    backup_facts_from,
    listing_json,
    listing_view,
    pitr_facts_from,
)
from astats_console.facts import BackupFacts, StackFacts
from astats_console.reasons import Thresholds
from astats_console.status import render, stack_reasons
from astats_console.watchrules import Rules
from components.config import PitrSettings

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
THRESHOLDS = Thresholds()
DUMP = BackupEntry(
    "astats-20261124T100000Z.dump",
    "/backups/astats-20261124T100000Z.dump",
    NOW - timedelta(hours=2),
    2048,
    "ok",
    "drill ok, restore 3.1 s",
)
SCHEDULER = {
    "interval_minutes": 360,
    "last_result": "success",
    "last_attempt": (NOW - timedelta(hours=2)).isoformat(),
}


def at(**ago: float) -> str:
    return (NOW - timedelta(**ago)).isoformat()


HEALTHY: dict[str, Any] = {
    "checked_at": at(seconds=20),
    "archive_timeout_s": 60,
    "archive": {
        "last_archived_wal": "00000001000000000000002A",
        "last_archived_at": at(seconds=35),
        "last_failed_wal": None,
        "last_failed_at": None,
        "pending_segments": 0,
        "oldest_pending_age_s": None,
        "pg_wal_bytes": 48 * 1024**2,
        "repo_free_bytes": 10 * 1024**3,
        "failing": False,
        "lagging": False,
        "reason": None,
    },
    "newest_backup": {
        "label": "20261124-060000F_20261124-110000D",
        "type": "diff",
        "started_at": at(hours=1, minutes=2),
        "stopped_at": at(hours=1),
        "size_bytes": 30 * 1024**2,
        "repo_bytes": 3 * 1024**2,
    },
    "oldest_backup_at": "2026-11-17T06:00:00+00:00",
    "backups": 3,
    "repo_bytes": 120 * 1024**2,
    "last_backup_run": {
        "type": "diff",
        "ok": True,
        "finished_at": at(hours=1),
        "seconds": 120.5,
        "error": None,
    },
    "last_drill": {
        "backup": "20261124-060000F_20261124-110000D",
        "recovered_to": at(minutes=50),
        "ok": True,
        "finished_at": at(minutes=45),
        "restore_seconds": 41.2,
        "summary": "drill ok: 12 tables match, recovered to 11:10:00, restore 41.2 s",
        "error": None,
    },
}


def block(**changes: Any) -> dict[str, Any]:
    """HEALTHY with top-level keys replaced; ``archive`` changes are merged into its own."""
    pitr = copy.deepcopy(HEALTHY)
    pitr["archive"].update(changes.pop("archive", {}))
    pitr.update(changes)
    return pitr


def facts_of(pitr: dict[str, Any] | None) -> StackFacts:
    status = {**SCHEDULER, **({"pitr": pitr} if pitr is not None else {})}
    found = backup_facts_from("running", status, [DUMP], [])
    return StackFacts("prod", NOW, [], None, backups=found)


def shown(renderable: RenderableType) -> list[str]:
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(renderable)
    return [line.rstrip() for line in console.export_text().splitlines()]


def status_lines(pitr: dict[str, Any] | None) -> list[str]:
    facts = facts_of(pitr)
    return shown(render(facts, stack_reasons(facts, THRESHOLDS)))


def attention(pitr: dict[str, Any] | None) -> list[str]:
    return [line for line in status_lines(pitr) if line.startswith("ATTENTION")]


def test_a_healthy_archive_is_shown_and_needs_nothing() -> None:
    lines = status_lines(HEALTHY)
    assert (
        "WAL archive: last segment 00000001000000000000002A archived 35s ago; 0 segments "
        "waiting, pg_wal 48.0 MiB, repository disk 10.0 GiB free (checked 20s ago)"
    ) in lines
    assert (
        "physical backups: newest 20261124-060000F_20261124-110000D (diff, 1h00m old, 30.0 MiB), "
        "3 in all, 120.0 MiB in the repository; restores reach back to 2026-11-17 06:00 UTC "
        "(7d06h ago)"
    ) in lines
    assert (
        "last physical drill: drill ok: 12 tables match, recovered to 11:10:00, restore 41.2 s "
        "(45m00s ago)"
    ) in lines
    assert lines[-1] == "ok: nothing needs attention"


def test_without_a_pitr_block_status_shows_what_it_showed_before() -> None:
    lines = status_lines(None)
    assert not any(line.startswith(("WAL", "physical", "last physical")) for line in lines)
    assert lines[-1] == "ok: nothing needs attention"
    assert pitr_problems(None, NOW) == []
    assert facts_of(None).to_json([])["backups"]["pitr"] is None


def test_failing_archiving_gives_pgbackrests_reason() -> None:
    reason = "[104]: archive-push command encountered error(s): unable to open file"
    failing = block(
        archive={
            "failing": True,
            "lagging": True,
            "reason": reason,
            "last_failed_wal": "00000001000000000000002B",
            "last_failed_at": at(seconds=10),
            "pending_segments": 3,
            "oldest_pending_age_s": 400.0,
        }
    )
    # Failing archives lag too: the failure says how many wait, the lag is not repeated.
    assert attention(failing) == [
        f"ATTENTION WAL archiving failing: {reason} (last segment archived 35s ago, "
        "3 segments waiting)"
    ]
    never = block(archive={"failing": True, "reason": None, "last_archived_at": None})
    assert attention(never) == [
        "ATTENTION WAL archiving failing: pgBackRest gave no reason (no segment archived yet)"
    ]


def test_a_segment_waiting_more_than_two_timeouts_is_a_lag() -> None:
    waiting = block(archive={"pending_segments": 2, "oldest_pending_age_s": 121.0})
    assert attention(waiting) == [
        "ATTENTION WAL archiving lags: the oldest segment has waited 2m01s, more than twice "
        "archive_timeout (2m00s)"
    ]
    assert attention(block(archive={"pending_segments": 1, "oldest_pending_age_s": 119.0})) == []
    # The scheduler's own verdict counts as well.
    assert len(attention(block(archive={"lagging": True, "oldest_pending_age_s": 90.0}))) == 1


def test_a_large_pg_wal_says_its_size() -> None:
    big = block(archive={"pg_wal_bytes": PG_WAL_LIMIT_BYTES + 1, "pending_segments": 2})
    [line] = attention(big)
    assert line.startswith("ATTENTION pg_wal holds 2.0 GiB, 2 segments waiting for the archive")
    many = block(
        archive={"pg_wal_bytes": 1100 * 1024**2, "pending_segments": PENDING_SEGMENTS_LIMIT + 1}
    )
    [line] = attention(many)
    assert line.startswith("ATTENTION pg_wal holds 1.1 GiB, 65 segments waiting")
    assert "it grows until archiving catches up or the disk is full" in line
    at_limits = block(
        archive={"pg_wal_bytes": PG_WAL_LIMIT_BYTES, "pending_segments": PENDING_SEGMENTS_LIMIT}
    )
    assert attention(at_limits) == []


def test_a_block_the_scheduler_stopped_refreshing_is_stale() -> None:
    # archive_timeout 60 s: three of them and a minute is 4m00s.
    [line] = attention(block(checked_at=at(seconds=241)))
    assert line.startswith("ATTENTION WAL archiving status not refreshed: checked 4m01s ago")
    assert "the scheduler is stuck or gone" in line
    assert attention(block(checked_at=at(seconds=239))) == []
    slow = block(archive_timeout_s=600, checked_at=at(minutes=30))
    assert attention(slow) == []
    assert len(attention(block(checked_at=None))) == 1


def test_no_physical_backup_yet_is_named() -> None:
    empty = block(newest_backup=None, backups=0, oldest_backup_at=None, last_drill=None)
    lines = status_lines(empty)
    assert "physical backups: none yet" in lines
    assert "last physical drill: none yet" in lines
    assert attention(empty) == [
        "ATTENTION physical backups: none yet, a point-in-time restore has nothing to start from"
    ]


def test_a_failed_physical_drill_and_backup_run_are_named() -> None:
    drill = block(
        last_drill={
            "backup": "20261124-060000F",
            "recovered_to": None,
            "ok": False,
            "finished_at": at(minutes=5),
            "restore_seconds": 12.0,
            "summary": "drill failed",
            "error": "recovery ended before the target: WAL 000000010000000000000029 missing",
        }
    )
    assert attention(drill) == [
        "ATTENTION physical drill failed (20261124-060000F, 5m00s ago): recovery ended before "
        "the target: WAL 000000010000000000000029 missing"
    ]
    run = block(
        last_backup_run={
            "type": "full",
            "ok": False,
            "finished_at": at(minutes=10),
            "seconds": 3.0,
            "error": "ERROR: [047]: unable to create path",
        }
    )
    assert attention(run) == [
        "ATTENTION physical backup failed (full, 10m00s ago): ERROR: [047]: unable to create path"
    ]


def test_the_block_is_read_tolerantly() -> None:
    odd = block(
        something_new={"x": 1},
        archive_timeout_s="sixty",
        backups=[
            {"label": "20261117-060000F", "type": "full", "started_at": "2026-11-17T06:00:00Z"},
            {"label": "20261124-060000F", "type": "full", "started_at": at(hours=6)},
            {"type": "full"},
            "not a backup",
        ],
        last_backup_run="not a record",
        archive={"pending_segments": "many", "pg_wal_bytes": None, "failing": "yes"},
    )
    pitr = pitr_facts_from(odd)
    assert pitr is not None
    assert pitr.archive_timeout_s == backups.DEFAULT_ARCHIVE_TIMEOUT_S
    # The listed backups and the newest, oldest first.
    assert [b.label for b in pitr.backups] == [
        "20261117-060000F",
        "20261124-060000F",
        "20261124-060000F_20261124-110000D",
    ]
    assert pitr.backup_count == 3
    assert pitr.last_backup_run is None
    assert (pitr.archive.pending_segments, pitr.archive.failing) == (0, False)
    assert pitr_facts_from("not a block") is None
    bare = pitr_facts_from({})
    assert bare is not None and bare.newest is None and bare.checked_at is None


def test_the_default_archive_timeout_is_the_programs() -> None:
    assert PitrSettings().archive_timeout_s == backups.DEFAULT_ARCHIVE_TIMEOUT_S


def test_status_json_carries_the_block() -> None:
    facts = facts_of(HEALTHY)
    report = facts.to_json(stack_reasons(facts, THRESHOLDS))
    pitr = report["backups"]["pitr"]
    assert pitr["archive"]["last_archived_wal"] == "00000001000000000000002A"
    assert pitr["archive"]["last_archived_age_seconds"] == 35
    assert pitr["backups"][0]["label"] == "20261124-060000F_20261124-110000D"
    assert pitr["backups"][0]["age_seconds"] == 3600
    assert pitr["oldest_backup_at"] == "2026-11-17T06:00:00+00:00"
    assert pitr["last_drill"]["ok"] is True
    json.dumps(report)
    failing = facts_of(block(archive={"failing": True, "reason": "boom"}))
    assert failing.to_json(stack_reasons(failing, THRESHOLDS))["ok"] is False


def test_unreadable_backups_add_no_archiving_lines() -> None:
    broken = BackupFacts("running", 360, problem="listing the backups failed: boom")
    facts = StackFacts("prod", NOW, [], None, backups=broken)
    lines = shown(render(facts, stack_reasons(facts, THRESHOLDS)))
    assert "backups: listing the backups failed: boom" in lines
    assert not any(line.startswith("WAL") for line in lines)


def test_backups_lists_the_physical_backups_and_their_drill() -> None:
    listed = block(
        backups=[
            {"label": "20261117-060000F", "type": "full", "started_at": "2026-11-17T06:00:00Z"},
        ]
    )
    pitr = pitr_facts_from(listed)
    lines = shown(listing_view("prod", [DUMP], pitr, NOW))
    assert any("astats-20261124T100000Z.dump" in line for line in lines)
    assert any(
        "physical backups (pgBackRest); restores reach back to 2026-11-17 06:00 UTC" in line
        for line in lines
    )
    rows = [line for line in lines if "20261124-060000F_20261124-110000D" in line]
    assert len(rows) == 1 and "diff" in rows[0] and "30.0 MiB" in rows[0]
    assert any("20261117-060000F" in line and "full" in line for line in lines)
    labels = [line.split()[1] for line in lines if "20261" in line and "F" in line.split()[1]]
    assert labels == ["20261124-060000F_20261124-110000D", "20261117-060000F"], "newest first"
    assert lines[-1].startswith("last physical drill: drill ok: 12 tables match")

    report = listing_json([DUMP], pitr, NOW)
    assert [d["name"] for d in report["dumps"]] == ["astats-20261124T100000Z.dump"]
    assert [b["label"] for b in report["pitr"]["backups"]] == [
        "20261117-060000F",
        "20261124-060000F_20261124-110000D",
    ]
    assert report["pitr"]["last_drill"]["summary"].startswith("drill ok")


def test_backups_without_archiving_list_the_dumps_alone() -> None:
    lines = shown(listing_view("prod", [DUMP], None, NOW))
    assert not any("physical" in line for line in lines)
    assert listing_json([DUMP], None, NOW)["pitr"] is None
    assert shown(listing_view("prod", [], None, NOW)) == ["no backups in /backups of stack 'prod'"]


def test_watch_reports_each_problem_when_it_starts_and_when_it_ends() -> None:
    rules = Rules(THRESHOLDS)
    healthy = facts_of(HEALTHY).backups
    assert rules.on_check(None, healthy, NOW) == []
    failing = facts_of(block(archive={"failing": True, "reason": "unable to push"})).backups
    [report] = rules.on_check(None, failing, NOW)
    assert (report.kind, report.service, report.resolved) == ("pitr", "backup", False)
    assert report.message.startswith("WAL archiving failing: unable to push")
    assert report.payload("prod")["kind"] == "pitr"
    later = NOW + timedelta(minutes=1)
    assert rules.on_check(None, failing, later) == [], "reported once while it lasts"
    unreadable = BackupFacts("running", 360, problem="the scheduler is not running (exited)")
    assert [r.kind for r in rules.on_check(None, unreadable, later)] == ["backup"]
    assert rules.on_check(None, failing, later) == [], "still the same problem"
    [ended] = rules.on_check(None, healthy, later)
    assert ended.resolved and ended.message == report.message and ended.at == later
    assert ended.line().endswith(f"pitr backup: resolved: {report.message}")


def test_watch_reports_every_condition_status_names() -> None:
    rules = Rules(THRESHOLDS)
    troubled = block(
        checked_at=at(minutes=10),
        archive={"pending_segments": 100, "oldest_pending_age_s": 600.0, "pg_wal_bytes": 1},
        newest_backup=None,
        backups=0,
        last_drill={"ok": False, "finished_at": at(minutes=1), "error": "boom"},
    )
    messages = [r.message for r in rules.on_check(None, facts_of(troubled).backups, NOW)]
    assert [m.split(":")[0] for m in messages] == [
        "WAL archiving lags",
        "pg_wal holds 1 B, 100 segments waiting for the archive (limits 64 segments, 2.0 GiB)",
        "WAL archiving status not refreshed",
        "physical backups",
        "physical drill failed (?, 1m00s ago)",
    ]
    facts = facts_of(troubled)
    assert [f"ATTENTION {m}" for m in messages] == [
        line
        for line in shown(render(facts, stack_reasons(facts, THRESHOLDS)))
        if "ATTENTION" in line
    ]

"""What ``astats watch`` reports from events and checks, and how often."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from astats_console.facts import BackupFacts, DiskFacts
from astats_console.reasons import Thresholds
from astats_console.watchrules import Rules

T0 = 1_790_000_000
THRESHOLDS = Thresholds(disk_percent=90, restarts=3, window=timedelta(minutes=5))


def event(
    action: str, seconds: float, service: str = "backend", **attributes: str
) -> dict[str, Any]:
    return {
        "Action": action,
        "Actor": {
            "ID": f"id-{service}",
            "Attributes": {"astats.service": service, "name": f"c-{service}", **attributes},
        },
        "timeNano": int(seconds * 1e9),
    }


def test_oom_crash_and_unhealthy_are_one_report_each() -> None:
    rules = Rules(THRESHOLDS)
    [oom] = rules.on_event(event("oom", T0))
    assert oom.kind == "oom" and oom.service == "backend" and oom.container == "c-backend"
    [crash] = rules.on_event(event("die", T0 + 1, exitCode="137"))
    assert crash.kind == "exit" and crash.message == "exited with code 137"
    [sick] = rules.on_event(event("health_status: unhealthy", T0 + 2), "HTTP Error 500")
    assert sick.line() == (
        "2026-09-21T14:13:22+00:00 unhealthy backend (c-backend): healthcheck failing: "
        "HTTP Error 500"
    )
    assert rules.on_event(event("health_status: healthy", T0 + 3)) == []
    assert rules.on_event(event("start", T0 + 4)) == []


def test_a_clean_exit_is_no_crash_and_a_stop_request_is_named() -> None:
    rules = Rules(THRESHOLDS)
    assert rules.on_event(event("die", T0, exitCode="0")) == []
    assert rules.on_event(event("kill", T0 + 10, signal="15")) == []
    [stopped] = rules.on_event(event("die", T0 + 12, exitCode="143"))
    assert stopped.message == "exited with code 143 after a stop request"


def test_a_restart_loop_is_reported_once_per_window() -> None:
    rules = Rules(THRESHOLDS)
    kinds = [
        [r.kind for r in rules.on_event(event("die", T0 + i * 30, exitCode="1"))] for i in range(6)
    ]
    assert kinds == [["exit"], ["exit"], ["exit", "restart-loop"], ["exit"], ["exit"], ["exit"]]
    later = rules.on_event(event("die", T0 + 400, exitCode="1"))
    assert [r.kind for r in later] == ["exit", "restart-loop"]
    assert later[1].message == "3 restarts within 5m00s"


def test_services_loop_separately() -> None:
    rules = Rules(THRESHOLDS)
    for i, service in enumerate(["db", "backend", "nginx"]):
        kinds = [r.kind for r in rules.on_event(event("die", T0 + i, service, exitCode="1"))]
        assert kinds == ["exit"]


def test_disk_and_backup_problems_are_reported_when_they_start() -> None:
    rules = Rules(THRESHOLDS)
    now = datetime.fromtimestamp(T0, UTC)
    full = DiskFacts("/var/lib/docker", total=100, free=5)
    roomy = DiskFacts("/var/lib/docker", total=100, free=50)
    ok = BackupFacts("running", 60, "a.dump", now - timedelta(minutes=30), "ok", 1, "success")
    [disk] = rules.on_check(full, ok, now)
    assert disk.kind == "disk" and "95% full" in disk.message
    assert rules.on_check(full, ok, now) == []
    assert rules.on_check(roomy, ok, now) == []
    assert [r.kind for r in rules.on_check(full, ok, now)] == ["disk"]

    failed = replace(ok, last_result="failure", last_error="backup: boom", last_attempt=now)
    [first] = rules.on_check(roomy, failed, now)
    assert first.message == "the last scheduled run failed: backup: boom"
    assert rules.on_check(roomy, failed, now) == []
    again = replace(failed, last_attempt=now + timedelta(minutes=60))
    assert [r.message for r in rules.on_check(roomy, again, now)] == [first.message]

    overdue = replace(ok, newest_created=now - timedelta(minutes=121))
    [late] = rules.on_check(roomy, overdue, now)
    assert late.kind == "backup" and "more than two intervals" in late.message
    # The age grows with every check; the problem is the same one.
    assert rules.on_check(roomy, overdue, now + timedelta(minutes=1)) == []


def test_a_report_posts_as_json_with_its_line() -> None:
    [report] = Rules(THRESHOLDS).on_event(event("oom", T0))
    payload = report.payload("prod")
    assert payload["stack"] == "prod" and payload["kind"] == "oom"
    assert payload["text"] == report.line()

"""What makes ``astats status`` exit non-zero, one line per reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from astats_console.facts import BackupFacts, DiskFacts, ServiceFacts, StackFacts
from astats_console.reasons import Thresholds, attention_reasons, restart_loop

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
THRESHOLDS = Thresholds(disk_percent=90, restarts=3, window=timedelta(minutes=10))
HEALTHY = ServiceFacts(
    service="backend",
    container="astats-dev-backend-1",
    short_id="0123456789ab",
    state="running",
    health="healthy",
    health_output=None,
    started=NOW - timedelta(hours=2),
    restarts=0,
    exit_code=None,
    exit_at=None,
    oom_killed=False,
    deaths=(),
    memory_used=100,
    memory_limit=1000,
    cpu_percent=1.0,
    image="0123456789ab astats-dev-backend:latest",
)
FRESH_BACKUPS = BackupFacts(
    scheduler_state="running",
    interval_minutes=360,
    newest_name="astats-20261124T100000Z.dump",
    newest_created=NOW - timedelta(hours=2),
    newest_verification="ok",
    count=3,
    last_result="success",
)
ROOMY_DISK = DiskFacts("/var/lib/docker", total=100, free=50)


def facts(
    *services: ServiceFacts, disk: DiskFacts = ROOMY_DISK, backups: BackupFacts = FRESH_BACKUPS
) -> StackFacts:
    return StackFacts("dev", NOW, list(services), disk, backups=backups)


def test_a_healthy_stack_needs_nothing() -> None:
    assert attention_reasons(facts(HEALTHY), THRESHOLDS) == []


def test_unhealthy_says_what_the_last_check_said() -> None:
    sick = replace(HEALTHY, health="unhealthy", health_output="HTTP Error 500")
    assert attention_reasons(facts(sick), THRESHOLDS) == ["backend: unhealthy: HTTP Error 500"]


def test_an_oom_kill_since_start_is_reported_even_when_running_again() -> None:
    killed = replace(HEALTHY, oom_killed=True, restarts=1)
    assert attention_reasons(facts(killed), THRESHOLDS) == [
        "backend: OOM-killed since it started (memory limit too small?)"
    ]


def test_a_restart_loop_is_enough_deaths_inside_the_window() -> None:
    window = THRESHOLDS.window
    inside = (NOW - window + timedelta(seconds=1), NOW - timedelta(minutes=1), NOW)
    assert restart_loop(inside, NOW, THRESHOLDS) == 3
    spread = (NOW - window - timedelta(seconds=1), NOW - timedelta(minutes=1), NOW)
    assert restart_loop(spread, NOW, THRESHOLDS) is None
    looping = replace(HEALTHY, state="restarting", deaths=inside)
    assert attention_reasons(facts(looping), THRESHOLDS) == [
        "backend: restart loop, 3 restarts in the last 10m00s"
    ]


def test_a_restart_loop_shows_without_the_event_buffer() -> None:
    # Health checks' exec events can push the deaths out of the engine's 256-event buffer.
    looping = replace(HEALTHY, state="restarting", restarts=7, started=NOW - timedelta(hours=1))
    assert attention_reasons(facts(looping), THRESHOLDS) == [
        "backend: restart loop, 7 restarts, the last one within 10m00s"
    ]
    recent = replace(HEALTHY, restarts=3, started=NOW - timedelta(minutes=2))
    assert len(attention_reasons(facts(recent), THRESHOLDS)) == 1
    settled = replace(HEALTHY, restarts=3, started=NOW - timedelta(minutes=11))
    assert attention_reasons(facts(settled), THRESHOLDS) == []


def test_a_stopped_service_counts_unless_a_replacement_runs() -> None:
    stopped = replace(HEALTHY, state="exited", health="unhealthy", exit_code=1)
    assert attention_reasons(facts(stopped), THRESHOLDS) == [
        "backend: not running (exited, exit code 1)",
        "backend: unhealthy",
    ]
    old = replace(HEALTHY, state="exited", health=None, exit_code=0)
    assert attention_reasons(facts(old, HEALTHY), THRESHOLDS) == []


def test_disk_above_the_threshold() -> None:
    full = DiskFacts("/var/lib/docker", total=1000, free=50)
    assert attention_reasons(facts(HEALTHY, disk=full), THRESHOLDS) == [
        "disk: /var/lib/docker is 95% full (threshold 90%)"
    ]


def test_the_newest_backup_older_than_two_intervals() -> None:
    stale = replace(FRESH_BACKUPS, newest_created=NOW - timedelta(hours=12, minutes=1))
    assert attention_reasons(facts(HEALTHY, backups=stale), THRESHOLDS) == [
        "backups: the newest backup is 12h01m old, more than two intervals (720 minutes)"
    ]
    just = replace(FRESH_BACKUPS, newest_created=NOW - timedelta(hours=12))
    assert attention_reasons(facts(HEALTHY, backups=just), THRESHOLDS) == []


def test_backup_problems_each_get_a_line() -> None:
    bad = replace(
        FRESH_BACKUPS,
        newest_verification="checksum-mismatch",
        last_result="failure",
        last_error="backup: pg_dump failed",
    )
    assert attention_reasons(facts(HEALTHY, backups=bad), THRESHOLDS) == [
        "backups: the newest backup astats-20261124T100000Z.dump is checksum-mismatch",
        "backups: the last scheduled run failed: backup: pg_dump failed",
    ]
    none = BackupFacts("running", 360)
    assert attention_reasons(facts(HEALTHY, backups=none), THRESHOLDS) == [
        "backups: there is no backup"
    ]
    stopped = BackupFacts("exited", 360, problem="the scheduler is not running (exited)")
    assert attention_reasons(facts(HEALTHY, backups=stopped), THRESHOLDS) == [
        "backups: the scheduler is not running (exited)"
    ]

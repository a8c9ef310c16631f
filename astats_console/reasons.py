"""What needs an operator's attention, decided from facts alone (``status`` exits non-zero)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from astats_console.certificates import certificate_problems
from astats_console.durations import format_duration
from astats_console.facts import BackupFacts, DiskFacts, ServiceFacts, StackFacts


@dataclass(frozen=True)
class Thresholds:
    disk_percent: float = 90.0
    restarts: int = 3
    """This many deaths within ``window`` make a restart loop."""
    window: timedelta = timedelta(minutes=10)


def deaths_in_window(deaths: Iterable[datetime], now: datetime, window: timedelta) -> int:
    return sum(1 for moment in deaths if now - window <= moment <= now)


def restart_loop(deaths: Iterable[datetime], now: datetime, thresholds: Thresholds) -> int | None:
    """The number of recent deaths when they amount to a loop, else None."""
    count = deaths_in_window(deaths, now, thresholds.window)
    return count if count >= thresholds.restarts else None


def service_reasons(
    s: ServiceFacts, now: datetime, thresholds: Thresholds, *, replaced: bool = False
) -> list[str]:
    """``replaced``: another container of the service runs, so this one being down is fine."""
    reasons = []
    if s.state not in ("running", "restarting") and not replaced:
        code = f", exit code {s.exit_code}" if s.exit_code is not None else ""
        reasons.append(f"{s.service}: not running ({s.state}{code})")
    if s.health == "unhealthy":
        output = f": {s.health_output}" if s.health_output else ""
        reasons.append(f"{s.service}: unhealthy{output}")
    if s.oom_killed:
        reasons.append(f"{s.service}: OOM-killed since it started (memory limit too small?)")
    window = format_duration(thresholds.window)
    loop = restart_loop(s.deaths, now, thresholds)
    if loop is not None:
        reasons.append(f"{s.service}: restart loop, {loop} restarts in the last {window}")
    elif s.restarts >= thresholds.restarts and (
        s.state == "restarting" or (s.started is not None and now - s.started < thresholds.window)
    ):
        # The engine's event buffer is small (health checks fill it): the restart count and a
        # recent start tell the same story without it.
        reasons.append(
            f"{s.service}: restart loop, {s.restarts} restarts, the last one within {window}"
        )
    return reasons


def disk_reason(disk: DiskFacts | None, thresholds: Thresholds) -> str | None:
    if disk is None or disk.used_percent <= thresholds.disk_percent:
        return None
    return (
        f"disk: {disk.path} is {disk.used_percent:.0f}% full "
        f"(threshold {thresholds.disk_percent:g}%)"
    )


def backup_problems(backups: BackupFacts | None, now: datetime) -> list[tuple[str, str]]:
    """(key, text): the key stays the same while the problem lasts (a watch reports it once);
    each failed run has its own."""
    if backups is None:
        return []
    if backups.problem is not None:
        return [("unreadable", backups.problem)]
    problems = []
    if backups.newest_created is None:
        problems.append(("none", "there is no backup"))
    elif backups.interval_minutes is not None:
        age = now - backups.newest_created
        if age > timedelta(minutes=2 * backups.interval_minutes):
            problems.append(
                (
                    "overdue",
                    f"the newest backup is {format_duration(age)} old, more than two "
                    f"intervals ({2 * backups.interval_minutes:g} minutes)",
                )
            )
    if backups.newest_verification not in (None, "ok"):
        problems.append(
            (
                f"unverified:{backups.newest_name}",
                f"the newest backup {backups.newest_name} is {backups.newest_verification}",
            )
        )
    if backups.last_result == "failure":
        attempt = backups.last_attempt.isoformat() if backups.last_attempt else "?"
        problems.append(
            (f"failed:{attempt}", f"the last scheduled run failed: {backups.last_error}")
        )
    return problems


def backup_reasons(backups: BackupFacts | None, now: datetime) -> list[str]:
    return [f"backups: {text}" for _, text in backup_problems(backups, now)]


def attention_reasons(facts: StackFacts, thresholds: Thresholds) -> list[str]:
    running = {s.service for s in facts.services if s.state == "running"}
    reasons = [
        r
        for s in facts.services
        for r in service_reasons(s, facts.now, thresholds, replaced=s.service in running)
    ]
    disk = disk_reason(facts.disk, thresholds)
    if disk is not None:
        reasons.append(disk)
    reasons.extend(backup_reasons(facts.backups, facts.now))
    # The acme container's state and health have their service's own line above.
    problems = certificate_problems(facts.tls, facts.now, client_state=False)
    reasons.extend(f"certificate: {problem.text}" for problem in problems)
    return reasons

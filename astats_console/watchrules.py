"""What ``astats watch`` reports, decided from engine events and periodic checks alone."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from astats_console.archiving import pitr_problems
from astats_console.certificates import certificate_problems, unknown_groups
from astats_console.durations import format_duration
from astats_console.facts import BackupFacts, DiskFacts, TlsFacts
from astats_console.reasons import Thresholds, backup_problems, disk_reason, restart_loop

# A die this soon after a kill request is the end of a stop, not a crash.
STOP_GRACE = timedelta(minutes=2)


@dataclass(frozen=True)
class Report:
    at: datetime
    kind: str
    """oom, exit, unhealthy, restart-loop, disk, backup, pitr, certificate"""
    service: str
    container: str
    message: str
    resolved: bool = False
    """The end of a problem reported before (WAL archiving, physical backups, certificates)."""

    def line(self) -> str:
        where = f"{self.service} ({self.container})" if self.container else self.service
        message = f"resolved: {self.message}" if self.resolved else self.message
        return f"{self.at.isoformat(timespec='seconds')} {self.kind} {where}: {message}"

    def payload(self, stack: str) -> dict[str, Any]:
        return {
            "stack": stack,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "service": self.service,
            "container": self.container,
            "message": self.message,
            "resolved": self.resolved,
            "text": self.line(),
        }


def event_time(event: dict[str, Any]) -> datetime:
    nanos = event.get("timeNano")
    seconds = nanos / 1e9 if isinstance(nanos, int) else float(event.get("time") or 0)
    return datetime.fromtimestamp(seconds, UTC)


class Rules:
    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.deaths: dict[str, deque[datetime]] = defaultdict(deque)
        self.loop_reported: dict[str, datetime] = {}
        self.kill_requested: dict[str, datetime] = {}
        self.open_problems: set[str] = set()
        self.open_pitr: dict[str, Report] = {}
        self.open_certificates: dict[str, Report] = {}

    def on_event(self, event: dict[str, Any], health_output: str | None = None) -> list[Report]:
        action = str(event.get("Action") or event.get("status") or "")
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        service = str(attributes.get("astats.service", "?"))
        name = str(attributes.get("name", ""))
        at = event_time(event)
        cid = str((event.get("Actor") or {}).get("ID") or event.get("id") or "")

        def report(kind: str, message: str) -> Report:
            return Report(at, kind, service, name, message)

        if action == "kill":
            self.kill_requested[cid] = at
            return []
        if action == "oom":
            return [report("oom", "killed for running out of memory (raise its memory limit?)")]
        if action.startswith("health_status") and action.endswith("unhealthy"):
            output = f": {health_output}" if health_output else ""
            return [report("unhealthy", f"healthcheck failing{output}")]
        if action != "die":
            return []
        reports = []
        code = str(attributes.get("exitCode", "?"))
        stopped = self.kill_requested.pop(cid, None)
        if code != "0":
            after = " after a stop request" if stopped and at - stopped < STOP_GRACE else ""
            reports.append(report("exit", f"exited with code {code}{after}"))
        deaths = self.deaths[service]
        deaths.append(at)
        while deaths and at - deaths[0] > self.thresholds.window:
            deaths.popleft()
        count = restart_loop(deaths, at, self.thresholds)
        last = self.loop_reported.get(service)
        if count is not None and (last is None or at - last > self.thresholds.window):
            self.loop_reported[service] = at
            window = format_duration(self.thresholds.window)
            reports.append(report("restart-loop", f"{count} restarts within {window}"))
        return reports

    def on_check(
        self, disk: DiskFacts | None, backups: BackupFacts | None, now: datetime
    ) -> list[Report]:
        """Disk and backup problems, each reported when it starts (again after it cleared); WAL
        archiving and physical backup problems also when they end."""
        current = {}
        disk_problem = disk_reason(disk, self.thresholds)
        if disk_problem is not None:
            current["disk"] = Report(now, "disk", "disk", "", disk_problem.removeprefix("disk: "))
        for key, text in backup_problems(backups, now):
            current[f"backup:{key}"] = Report(now, "backup", "backup", "", text)
        reports = [found for key, found in current.items() if key not in self.open_problems]
        self.open_problems = set(current)
        return reports + self._on_pitr(backups, now)

    def _on_pitr(self, backups: BackupFacts | None, now: datetime) -> list[Report]:
        """While the status file cannot be read, its problems neither start nor end."""
        if backups is not None and backups.problem is not None:
            return []
        current = {
            key: Report(now, "pitr", "backup", "", text)
            for key, text in pitr_problems(backups.pitr if backups else None, now)
        }
        reports = [found for key, found in current.items() if key not in self.open_pitr]
        reports += [
            replace(opened, at=now, resolved=True)
            for key, opened in self.open_pitr.items()
            if key not in current
        ]
        self.open_pitr = {key: self.open_pitr.get(key, found) for key, found in current.items()}
        return reports

    def on_certificates(self, tls: TlsFacts | None, now: datetime) -> list[Report]:
        """Certificate problems, each reported when it starts and, resolved, when it ends. What
        could not be looked at this time (nginx or the acme client not running) stays as it was."""
        unknown = unknown_groups(tls)
        current = {
            problem.key: Report(
                now, "certificate", problem.service, problem.container, problem.text
            )
            for problem in certificate_problems(tls, now)
        }
        reports = [found for key, found in current.items() if key not in self.open_certificates]
        still_open = dict(current)
        for key, opened in self.open_certificates.items():
            if key in current or key.split(":", 1)[0] in unknown:
                still_open[key] = opened
            else:
                reports.append(replace(opened, at=now, resolved=True))
        self.open_certificates = still_open
        return reports

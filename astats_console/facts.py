"""What the console learned about a stack at one moment: plain data, no engine calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ServiceFacts:
    service: str
    container: str
    short_id: str
    state: str
    health: str | None
    health_output: str | None
    """Output of the last failing healthcheck, when the container has one."""
    started: datetime | None
    restarts: int
    exit_code: int | None
    exit_at: datetime | None
    oom_killed: bool
    """Killed for memory at least once since the container was created."""
    deaths: tuple[datetime, ...]
    """When the container's process died, as far back as the engine's event buffer goes."""
    memory_used: int | None
    memory_limit: int | None
    cpu_percent: float | None
    image: str


@dataclass(frozen=True)
class DiskFacts:
    path: str
    total: int
    free: int

    @property
    def used_percent(self) -> float:
        return 100.0 * (self.total - self.free) / self.total if self.total else 0.0


@dataclass(frozen=True)
class VolumeFacts:
    name: str
    service: str
    size: int | None


@dataclass(frozen=True)
class BackupFacts:
    scheduler_state: str
    interval_minutes: float | None
    newest_name: str | None = None
    newest_created: datetime | None = None
    newest_verification: str | None = None
    count: int = 0
    last_result: str | None = None
    last_attempt: datetime | None = None
    last_error: str | None = None
    drill: str | None = None
    problem: str | None = None
    """Why the backups could not be read, when they could not."""


@dataclass(frozen=True)
class StackFacts:
    stack: str
    now: datetime
    services: list[ServiceFacts]
    disk: DiskFacts | None
    volumes: list[VolumeFacts] = field(default_factory=list)
    backups: BackupFacts | None = None

    def to_json(self, reasons: list[str]) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "stack": self.stack,
            "at": when(self.now),
            "ok": not reasons,
            "reasons": reasons,
            "services": [
                {
                    "service": s.service,
                    "container": s.container,
                    "id": s.short_id,
                    "state": s.state,
                    "health": s.health,
                    "health_output": s.health_output,
                    "started": when(s.started),
                    "uptime_seconds": int((self.now - s.started).total_seconds())
                    if s.started and s.state == "running"
                    else None,
                    "restarts": s.restarts,
                    "exit_code": s.exit_code,
                    "exit_at": when(s.exit_at),
                    "oom_killed": s.oom_killed,
                    "memory_used": s.memory_used,
                    "memory_limit": s.memory_limit,
                    "cpu_percent": s.cpu_percent,
                    "image": s.image,
                }
                for s in self.services
            ],
            "disk": None
            if self.disk is None
            else {
                "path": self.disk.path,
                "total": self.disk.total,
                "free": self.disk.free,
                "used_percent": round(self.disk.used_percent, 1),
            },
            "volumes": [
                {"name": v.name, "service": v.service, "size": v.size} for v in self.volumes
            ],
            "backups": None
            if self.backups is None
            else {
                "scheduler": self.backups.scheduler_state,
                "interval_minutes": self.backups.interval_minutes,
                "newest": self.backups.newest_name,
                "newest_created": when(self.backups.newest_created),
                "newest_age_seconds": int((self.now - self.backups.newest_created).total_seconds())
                if self.backups.newest_created
                else None,
                "newest_verification": self.backups.newest_verification,
                "count": self.backups.count,
                "last_result": self.backups.last_result,
                "last_attempt": when(self.backups.last_attempt),
                "last_error": self.backups.last_error,
                "drill": self.backups.drill,
                "problem": self.backups.problem,
            },
        }

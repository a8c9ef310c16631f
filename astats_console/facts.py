"""What the console learned about a stack at one moment: plain data, no engine calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


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
class PhysicalBackup:
    """One pgBackRest backup in the repository."""

    label: str
    type: str
    """full, diff or incr"""
    started_at: datetime | None
    stopped_at: datetime | None
    size_bytes: int | None
    """The database's size in it."""
    repo_bytes: int | None
    """What it takes in the repository (compressed, and only the changes for diff and incr)."""


@dataclass(frozen=True)
class PhysicalRun:
    """The scheduler's last physical backup run."""

    type: str
    ok: bool
    finished_at: datetime | None
    seconds: float | None
    error: str | None


@dataclass(frozen=True)
class PhysicalDrill:
    """The last restore drill of a physical backup, replayed to a point in time."""

    backup: str | None
    recovered_to: datetime | None
    ok: bool
    finished_at: datetime | None
    restore_seconds: float | None
    summary: str | None
    error: str | None


@dataclass(frozen=True)
class ArchiveFacts:
    """WAL archiving as the scheduler last saw it (the server's archive_status, pgBackRest's
    spool)."""

    last_archived_wal: str | None = None
    last_archived_at: datetime | None = None
    last_failed_wal: str | None = None
    last_failed_at: datetime | None = None
    pending_segments: int = 0
    """Segments the server has finished and the archive has not taken yet."""
    oldest_pending_age_s: float | None = None
    pg_wal_bytes: int | None = None
    repo_free_bytes: int | None = None
    failing: bool = False
    """The last failure is newer than the last success."""
    lagging: bool = False
    """The scheduler found a segment waiting longer than twice archive_timeout."""
    reason: str | None = None
    """pgBackRest's own words for the failure, one line."""


@dataclass(frozen=True)
class PitrFacts:
    """The status file's ``pitr`` block: continuous archiving and physical backups."""

    checked_at: datetime | None
    archive_timeout_s: float
    archive: ArchiveFacts
    backups: tuple[PhysicalBackup, ...] = ()
    """Oldest first: every backup when the block lists them, else the newest alone."""
    backup_count: int = 0
    oldest_backup_at: datetime | None = None
    """The earliest moment a restore can reach: the start of the oldest backup."""
    repo_bytes: int | None = None
    last_backup_run: PhysicalRun | None = None
    last_drill: PhysicalDrill | None = None

    @property
    def newest(self) -> PhysicalBackup | None:
        return self.backups[-1] if self.backups else None

    def to_json(self, now: datetime) -> dict[str, Any]:
        archive, run, drill = self.archive, self.last_backup_run, self.last_drill
        return {
            "checked_at": when(self.checked_at),
            "checked_age_seconds": _age(self.checked_at, now),
            "archive_timeout_s": self.archive_timeout_s,
            "archive": {
                "last_archived_wal": archive.last_archived_wal,
                "last_archived_at": when(archive.last_archived_at),
                "last_archived_age_seconds": _age(archive.last_archived_at, now),
                "last_failed_wal": archive.last_failed_wal,
                "last_failed_at": when(archive.last_failed_at),
                "pending_segments": archive.pending_segments,
                "oldest_pending_age_s": archive.oldest_pending_age_s,
                "pg_wal_bytes": archive.pg_wal_bytes,
                "repo_free_bytes": archive.repo_free_bytes,
                "failing": archive.failing,
                "lagging": archive.lagging,
                "reason": archive.reason,
            },
            "backups": [physical_backup_json(b, now) for b in self.backups],
            "backup_count": self.backup_count,
            "oldest_backup_at": when(self.oldest_backup_at),
            "repo_bytes": self.repo_bytes,
            "last_backup_run": None
            if run is None
            else {
                "type": run.type,
                "ok": run.ok,
                "finished_at": when(run.finished_at),
                "seconds": run.seconds,
                "error": run.error,
            },
            "last_drill": None if drill is None else physical_drill_json(drill),
        }


def _age(moment: datetime | None, now: datetime) -> int | None:
    return int((now - moment).total_seconds()) if moment else None


def physical_backup_json(backup: PhysicalBackup, now: datetime) -> dict[str, Any]:
    return {
        "label": backup.label,
        "type": backup.type,
        "started_at": when(backup.started_at),
        "stopped_at": when(backup.stopped_at),
        "age_seconds": _age(backup.stopped_at or backup.started_at, now),
        "size_bytes": backup.size_bytes,
        "repo_bytes": backup.repo_bytes,
    }


def physical_drill_json(drill: PhysicalDrill) -> dict[str, Any]:
    return {
        "backup": drill.backup,
        "recovered_to": when(drill.recovered_to),
        "ok": drill.ok,
        "finished_at": when(drill.finished_at),
        "restore_seconds": drill.restore_seconds,
        "summary": drill.summary,
        "error": drill.error,
    }


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
    pitr: PitrFacts | None = None
    """None: the scheduler archives nothing (no ``pitr`` block in its status file)."""


@dataclass(frozen=True)
class CertificateFacts:
    """The leaf of the chain nginx is configured to serve."""

    names: tuple[str, ...]
    """Its subjectAltName DNS names, as written there."""
    issuer: str
    not_after: datetime
    serial: str
    fingerprint: str
    """SHA-256 of the DER, hex."""
    chain_length: int
    placeholder: bool
    """The acme client's self-signed stand-in (docker/acme/acme.sh placeholder)."""


@dataclass(frozen=True)
class AcmeFacts:
    """The acme client's container and, when it runs, what ``astats-acme status`` printed."""

    container: str
    state: str
    health: str | None
    health_output: str | None
    placeholder: bool | None = None
    served_matches: bool | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    next_attempt: datetime | None = None
    attempts_failed: int = 0
    problem: str | None = None
    """Why its status could not be read, when it runs and could not."""

    @property
    def reported(self) -> bool:
        """Whether the fields from ``astats-acme status`` are known."""
        return self.state == "running" and self.problem is None


@dataclass(frozen=True)
class TlsFacts:
    """HTTPS as the nginx container's ``astats.tls.*`` labels describe it (absent: TLS off)."""

    mode: str
    """acme or files"""
    domains: tuple[str, ...]
    path: str
    """The served chain, inside the nginx container."""
    nginx: str
    """The nginx container it was read from."""
    certificate: CertificateFacts | None
    problem: str | None = None
    """Why the certificate could not be read from a running nginx."""
    acme: AcmeFacts | None = None
    """The acme client (acme mode); None when the stack has no such container."""

    @property
    def certificate_known(self) -> bool:
        """False when nginx is not running: nothing was read, nothing is wrong with it yet."""
        return self.certificate is not None or self.problem is not None


@dataclass(frozen=True)
class ReleaseImageFacts:
    releases: int
    own_bytes: int
    """What removing them would free: their layers no other image shares."""


@dataclass(frozen=True)
class StackFacts:
    stack: str
    now: datetime
    services: list[ServiceFacts]
    disk: DiskFacts | None
    volumes: list[VolumeFacts] = field(default_factory=list)
    backups: BackupFacts | None = None
    tls: TlsFacts | None = None
    """None: TLS is off (or the stack has no nginx)."""
    release_images: ReleaseImageFacts | None = None

    def to_json(self, reasons: list[str]) -> dict[str, Any]:
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
            "release_images": None
            if self.release_images is None
            else {
                "releases": self.release_images.releases,
                "own_bytes": self.release_images.own_bytes,
            },
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
                "pitr": None if self.backups.pitr is None else self.backups.pitr.to_json(self.now),
            },
            "tls": None if self.tls is None else self._tls_json(self.tls),
        }

    def _tls_json(self, tls: TlsFacts) -> dict[str, Any]:
        cert, acme = tls.certificate, tls.acme
        return {
            "mode": tls.mode,
            "domains": list(tls.domains),
            "path": tls.path,
            "nginx": tls.nginx,
            "certificate": None
            if cert is None
            else {
                "names": list(cert.names),
                "issuer": cert.issuer,
                "not_after": when(cert.not_after),
                "days_left": (cert.not_after - self.now).days,
                "serial": cert.serial,
                "fingerprint_sha256": cert.fingerprint,
                "chain_length": cert.chain_length,
                "placeholder": cert.placeholder,
            },
            "problem": tls.problem,
            "acme": None
            if acme is None
            else {
                "container": acme.container,
                "state": acme.state,
                "health": acme.health,
                "health_output": acme.health_output,
                "placeholder": acme.placeholder,
                "served_matches": acme.served_matches,
                "last_attempt": when(acme.last_attempt),
                "last_success": when(acme.last_success),
                "last_error": acme.last_error,
                "next_attempt": when(acme.next_attempt),
                "attempts_failed": acme.attempts_failed,
                "problem": acme.problem,
            },
        }

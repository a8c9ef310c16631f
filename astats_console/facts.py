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
class StackFacts:
    stack: str
    now: datetime
    services: list[ServiceFacts]
    disk: DiskFacts | None
    volumes: list[VolumeFacts] = field(default_factory=list)
    backups: BackupFacts | None = None
    tls: TlsFacts | None = None
    """None: TLS is off (or the stack has no nginx)."""

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

"""Certificates: the chain nginx is configured to serve, and the acme client's own record.

The nginx container says how HTTPS is set up in its labels (absent: TLS off): ``astats.tls.mode``
(acme or files), ``astats.tls.domains`` (the configured host names, space separated) and
``astats.tls.certificate`` (the PEM chain's path inside it). In acme mode the client's container
(``astats.service=acme``) prints its record with ``astats-acme status`` (docker/acme/acme.sh;
the program's path mirrors components/acme.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from docker.errors import DockerException
from docker.models.containers import Container

from astats_console.backups import parse_time
from astats_console.durations import format_duration
from astats_console.engine import last_failing_check, run_in
from astats_console.errors import one_line
from astats_console.facts import AcmeFacts, CertificateFacts, TlsFacts
from astats_console.stack import service_of

TLS_MODE_LABEL = "astats.tls.mode"
TLS_DOMAINS_LABEL = "astats.tls.domains"
TLS_CERTIFICATE_LABEL = "astats.tls.certificate"
NGINX_SERVICE = "nginx"
ACME_SERVICE = "acme"
ACME_STATUS = ["/usr/local/bin/astats-acme", "status"]
# The only name of acme.sh's self-signed placeholder.
PLACEHOLDER_NAME = "placeholder.invalid"
EXPIRY_WARNING = timedelta(days=14)


def issuer_text(name: x509.Name) -> str:
    """``CN (O)``, as far as the issuer names them."""

    def first(oid: x509.ObjectIdentifier) -> str | None:
        found = name.get_attributes_for_oid(oid)
        value = found[0].value if found else None
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    common, organization = first(NameOID.COMMON_NAME), first(NameOID.ORGANIZATION_NAME)
    if common and organization and common != organization:
        return f"{common} ({organization})"
    return common or organization or name.rfc4514_string() or "?"


def parse_chain(pem: bytes) -> CertificateFacts:
    """The leaf (the first certificate) of a PEM chain; ValueError when there is none."""
    chain = x509.load_pem_x509_certificates(pem)
    leaf = chain[0]
    try:
        alt_names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(alt_names.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertificateFacts(
        names=names,
        issuer=issuer_text(leaf.issuer),
        not_after=leaf.not_valid_after_utc,
        serial=f"{leaf.serial_number:X}",
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        chain_length=len(chain),
        placeholder=names == (PLACEHOLDER_NAME,),
    )


def covers(pattern: str, host: str) -> bool:
    """A certificate name covers a host name: the same, or a wildcard for one label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, parent = host.partition(".")
        return pattern == host or (bool(label) and parent == pattern[2:])
    return pattern == host


def name_mismatch(names: tuple[str, ...], domains: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(configured domains no name covers, names that cover no configured domain)."""
    missing = [d for d in domains if not any(covers(n, d) for n in names)]
    extra = [n for n in names if not any(covers(n, d) for d in domains)]
    return missing, extra


def _newest(containers: list[Container]) -> Container | None:
    """The newest running one, else the newest (the list is oldest first)."""
    running = [c for c in containers if c.status == "running"]
    return (running or containers or [None])[-1]


def _served(nginx: Container, path: str) -> tuple[CertificateFacts | None, str | None]:
    """The chain at ``path`` in a running nginx, or why it could not be read."""
    if nginx.status != "running":
        return None, None
    if not path:
        return None, f"{nginx.name} has no {TLS_CERTIFICATE_LABEL} label"
    try:
        result = run_in(nginx, ["cat", path])
    except DockerException as exc:
        return None, f"cannot read {path} in {nginx.name}: {one_line(str(exc))}"
    if not result.ok:
        return None, f"cannot read {path} in {nginx.name}: {result.error_text()}"
    try:
        return parse_chain(result.stdout.encode()), None
    except ValueError as exc:
        return None, f"{path} in {nginx.name} holds no readable certificate: {one_line(str(exc))}"


def acme_record(facts: AcmeFacts, text: str) -> AcmeFacts:
    """``facts`` with what ``astats-acme status`` printed; its fields read tolerantly."""
    try:
        record: Any = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        said = one_line(text)[:200] or "nothing"
        return replace(facts, problem=f"astats-acme status printed no JSON object: {said}")
    failed = record.get("attempts_failed")

    def flag(key: str) -> bool | None:
        value = record.get(key)
        return value if isinstance(value, bool) else None

    return replace(
        facts,
        placeholder=flag("placeholder"),
        served_matches=flag("served_matches"),
        last_attempt=parse_time(record.get("last_attempt")),
        last_success=parse_time(record.get("last_success")),
        last_error=str(record["last_error"]) if record.get("last_error") else None,
        next_attempt=parse_time(record.get("next_attempt")),
        attempts_failed=failed if isinstance(failed, int) and failed >= 0 else 0,
    )


def _acme(container: Container) -> AcmeFacts:
    state = container.attrs.get("State") or {}
    facts = AcmeFacts(
        container=container.name or "",
        state=container.status,
        health=(state.get("Health") or {}).get("Status"),
        health_output=last_failing_check(state),
    )
    if container.status != "running":
        return facts
    try:
        result = run_in(container, ACME_STATUS)
    except DockerException as exc:
        return replace(facts, problem=f"astats-acme status failed: {one_line(str(exc))}")
    if not result.ok:
        return replace(facts, problem=f"astats-acme status failed: {result.error_text()}")
    return acme_record(facts, result.stdout)


def tls_facts(containers: list[Container]) -> TlsFacts | None:
    """From the stack's containers (oldest first); None when TLS is off."""
    nginx = _newest([c for c in containers if service_of(c) == NGINX_SERVICE])
    mode = str(nginx.labels.get(TLS_MODE_LABEL) or "") if nginx is not None else ""
    if nginx is None or not mode:
        return None
    path = str(nginx.labels.get(TLS_CERTIFICATE_LABEL) or "")
    certificate, problem = _served(nginx, path)
    acme = _newest([c for c in containers if service_of(c) == ACME_SERVICE])
    return TlsFacts(
        mode=mode,
        domains=tuple(str(nginx.labels.get(TLS_DOMAINS_LABEL) or "").split()),
        path=path,
        nginx=nginx.name or "",
        certificate=certificate,
        problem=problem,
        acme=_acme(acme) if acme is not None and mode == "acme" else None,
    )


@dataclass(frozen=True)
class Problem:
    key: str
    """Stays the same while the problem lasts (a watch reports its start and its end); its
    first part is the group it belongs to: served, renewal or client."""
    service: str
    container: str
    text: str


def unknown_groups(tls: TlsFacts | None) -> set[str]:
    """The groups nothing was learned of this time: their problems neither start nor end."""
    if tls is None:
        return set()
    unknown = set() if tls.certificate_known else {"served"}
    if tls.acme is not None and not tls.acme.reported and tls.acme.problem is None:
        unknown.add("renewal")
    return unknown


def _moment(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _renew_hint(mode: str) -> str:
    if mode == "acme":
        return "the ACME client should have renewed it (astats logs acme)"
    return "install a renewed one (tlsCertificate, tlsPrivateKey) and run pulumi up"


def _served_problems(tls: TlsFacts, now: datetime) -> list[Problem]:
    cert = tls.certificate
    if tls.problem is not None:
        return [Problem("served:unreadable", NGINX_SERVICE, tls.nginx, tls.problem)]
    if cert is None:
        return []
    if cert.placeholder:
        text = "nginx serves the self-signed placeholder: no certificate has been obtained yet"
        return [Problem("served:placeholder", NGINX_SERVICE, tls.nginx, text)]
    problems = []
    left = cert.not_after - now
    if left <= timedelta(0):
        ago = format_duration(-left)
        text = f"expired {_moment(cert.not_after)} ({ago} ago): {_renew_hint(tls.mode)}"
        problems.append(Problem(f"served:expired:{cert.serial}", NGINX_SERVICE, tls.nginx, text))
    elif left < EXPIRY_WARNING:
        days = f"{left.days} days" if left.days else format_duration(left)
        text = f"expires {_moment(cert.not_after)} ({days} left): {_renew_hint(tls.mode)}"
        problems.append(Problem(f"served:expiring:{cert.serial}", NGINX_SERVICE, tls.nginx, text))
    missing, extra = name_mismatch(cert.names, tls.domains)
    if missing or extra:
        parts = [
            f"{what} {' '.join(names)}"
            for what, names in (("missing", missing), ("extra", extra))
            if names
        ]
        text = f"its names do not match tls.domains: {'; '.join(parts)}"
        key = f"served:names:{' '.join(missing)}|{' '.join(extra)}"
        problems.append(Problem(key, NGINX_SERVICE, tls.nginx, text))
    return problems


def renewal_text(acme: AcmeFacts, now: datetime) -> str:
    """How the client's renewals go: its last error and next attempt when they fail."""
    if acme.next_attempt is None:
        upcoming = "no attempt scheduled"
    elif acme.next_attempt > now:
        upcoming = f"{_moment(acme.next_attempt)} (in {format_duration(acme.next_attempt - now)})"
    else:
        upcoming = f"{_moment(acme.next_attempt)} (due)"
    if not acme.attempts_failed:
        success = _moment(acme.last_success) if acme.last_success else "none yet"
        return f"last success {success}, next check {upcoming}"
    attempts = f"{acme.attempts_failed} failed attempt{'s' if acme.attempts_failed != 1 else ''}"
    since = f"last success {_moment(acme.last_success)}" if acme.last_success else "none obtained"
    return f"{attempts}, {since}: {acme.last_error or '?'}; next attempt {upcoming}"


def _acme_problems(tls: TlsFacts, now: datetime, *, client_state: bool) -> list[Problem]:
    acme = tls.acme
    if acme is None:
        text = f"no ACME client (astats.service={ACME_SERVICE}) in the stack: nothing renews it"
        return [Problem("client:missing", ACME_SERVICE, "", text)]
    problems = []
    if client_state and acme.state != "running":
        text = f"the ACME client is not running ({acme.state}): nothing renews it"
        problems.append(Problem("client:down", ACME_SERVICE, acme.container, text))
    elif client_state and acme.health == "unhealthy":
        text = f"the ACME client is unhealthy: {acme.health_output or '?'}"
        problems.append(Problem("client:unhealthy", ACME_SERVICE, acme.container, text))
    if acme.problem is not None:
        problems.append(Problem("renewal:unreadable", ACME_SERVICE, acme.container, acme.problem))
    elif acme.reported and acme.attempts_failed:
        text = f"renewal failing ({renewal_text(acme, now)})"
        problems.append(Problem("renewal:failing", ACME_SERVICE, acme.container, text))
    return problems


def certificate_problems(
    tls: TlsFacts | None, now: datetime, *, client_state: bool = True
) -> list[Problem]:
    """What needs attention. ``client_state``: whether the acme container not running or
    unhealthy counts here (``status`` has a line of its own for each container)."""
    if tls is None:
        return []
    problems = _served_problems(tls, now)
    if tls.mode == "acme":
        problems += _acme_problems(tls, now, client_state=client_state)
    return problems

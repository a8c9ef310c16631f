"""Certificates in ``status`` and ``watch`` on a real engine: an nginx stand-in carrying the tls
labels and a chain made here, and an acme client stand-in whose ``astats-acme status`` prints
the record each test writes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from docker.models.containers import Container

from components.acme import CERTS_DIR, PROGRAM
from components.tls import NGINX_TLS_DIR
from tests.console.certs import CA_ISSUER, DOMAINS, chain, placeholder
from tests.console.conftest import Images, Receiver
from tests.console.helpers import WAIT_S, Running, astats
from tests.console.ministack import MiniStack, health
from tests.docker import images

ACME_DIR = NGINX_TLS_DIR
ACME_CHAIN = f"{ACME_DIR}/current/fullchain.pem"
FILES_CHAIN = "/etc/nginx/astats/tls-fullchain.pem"
RECORD = "/tmp/astats-acme-status.json"
FAKE_ACME = f'#!/bin/sh\n[ "$1" = status ] || exit 64\nexec cat {RECORD}\n'
PLACEHOLDER_HEALTH = "acme: the placeholder is current: no certificate obtained yet"
LEGO_ERROR = (
    "acme: error: 400 :: urn:ietf:params:acme:error:connection :: "
    "Fetching http://astats.example.org/.well-known/acme-challenge/x: Connection refused"
)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def day(pem: bytes) -> str:
    """The leaf's expiry as status prints it."""
    return f"{x509.load_pem_x509_certificate(pem).not_valid_after_utc:%Y-%m-%d %H:%M} UTC"


def record(**changes: Any) -> dict[str, Any]:
    """What docker/acme/acme.sh's status prints for a healthy client, with ``changes``."""
    now = datetime.now(UTC)
    return {
        "domains": list(DOMAINS),
        "issuer": "CN=astats test CA,O=astats tests",
        "serial": "01",
        "not_after": iso(now + timedelta(days=60)),
        "days_left": 60,
        "covers_domains": True,
        "placeholder": False,
        "served_matches": True,
        "last_attempt": iso(now - timedelta(days=30)),
        "last_success": iso(now - timedelta(days=30)),
        "last_error": None,
        "next_attempt": iso(now + timedelta(hours=12)),
        "attempts_failed": 0,
        "failed_request": None,
        **changes,
    }


def tls_labels(mode: str, path: str) -> dict[str, str]:
    return {
        "astats.tls.mode": mode,
        "astats.tls.domains": " ".join(DOMAINS),
        "astats.tls.certificate": path,
    }


def files_nginx(stack: MiniStack, images: Images, pem: bytes | None) -> Container:
    """tls.mode files: the operator's chain where the files volume puts it (``None``: none)."""
    uploads = {FILES_CHAIN: (pem.decode(), 0o644)} if pem is not None else None
    labels = tls_labels("files", FILES_CHAIN)
    return stack.create("nginx", images.python, ["sleep", "600"], labels=labels, uploads=uploads)


def acme_nginx(stack: MiniStack, images: Images, pem: bytes) -> Container:
    """tls.mode acme: the certs volume's layout, ``current`` a symlink to a release."""
    labels = tls_labels("acme", ACME_CHAIN)
    nginx = stack.create("nginx", images.python, ["sleep", "600"], labels=labels)
    serve(stack, nginx, pem, "placeholder")
    return nginx


def serve(stack: MiniStack, nginx: Container, pem: bytes, release: str) -> None:
    """A release made current as acme.sh does it: written beside, then the symlink replaced."""
    stack.upload(nginx, {f"{ACME_DIR}/releases/{release}/fullchain.pem": (pem.decode(), 0o644)})
    switch = (
        f"ln -sfn releases/{release} {ACME_DIR}/.next && mv -T {ACME_DIR}/.next {ACME_DIR}/current"
    )
    result = nginx.exec_run(["sh", "-c", switch])
    assert result.exit_code == 0, result.output


def acme_client(
    stack: MiniStack,
    images: Images,
    said: dict[str, Any],
    *,
    healthy: bool = True,
    start: bool = True,
) -> Container:
    check = ["CMD", "true"] if healthy else ["CMD-SHELL", f"echo {PLACEHOLDER_HEALTH}; exit 1"]
    return stack.create(
        "acme",
        images.python,
        ["sleep", "600"],
        uploads={
            PROGRAM: (FAKE_ACME, 0o755),
            RECORD: (json.dumps(said), 0o644),
        },
        healthcheck=health(check, retries=1),
        start=start,
    )


def attention(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("ATTENTION")]


def line_starting(stdout: str, prefix: str) -> str:
    found = [line for line in stdout.splitlines() if line.startswith(prefix)]
    assert len(found) == 1, stdout
    return found[0]


def test_tls_off_is_one_dim_line_and_needs_nothing(
    ministack: MiniStack, console_images: Images
) -> None:
    ministack.create("nginx", console_images.python, ["sleep", "600"])
    result = astats(ministack.name, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TLS: off" in result.stdout.splitlines()
    assert "certificate" not in result.stdout
    assert json.loads(astats(ministack.name, "status", "--json").stdout)["tls"] is None


def test_a_valid_certificate_is_one_line_and_needs_nothing(
    ministack: MiniStack, console_images: Images
) -> None:
    pem = chain(days_left=60)
    files_nginx(ministack, console_images, pem)
    result = astats(ministack.name, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert line_starting(result.stdout, "certificate") == (
        f"certificate (files): {', '.join(DOMAINS)} issued by {CA_ISSUER}, "
        f"expires {day(pem)} (60 days left)"
    )
    assert "acme client" not in result.stdout and not attention(result.stdout)

    report = json.loads(astats(ministack.name, "status", "--json").stdout)
    tls = report["tls"]
    assert (report["ok"], tls["mode"], tls["domains"], tls["path"]) == (
        True,
        "files",
        list(DOMAINS),
        FILES_CHAIN,
    )
    cert = tls["certificate"]
    assert (cert["names"], cert["issuer"], cert["days_left"], cert["chain_length"]) == (
        list(DOMAINS),
        CA_ISSUER,
        60,
        2,
    )
    assert cert["placeholder"] is False and tls["problem"] is None and tls["acme"] is None


@pytest.mark.parametrize(
    ("pem", "wanted"),
    [
        (
            chain(days_left=5),
            "ATTENTION certificate: expires {day} (5 days left): install a renewed one "
            "(tlsCertificate, tlsPrivateKey) and run pulumi up",
        ),
        (
            chain(("astats.example.org", "old.example.org")),
            "ATTENTION certificate: its names do not match tls.domains: "
            "missing www.astats.example.org; extra old.example.org",
        ),
        (
            None,
            f"ATTENTION certificate: cannot read {FILES_CHAIN} in {{nginx}}: "
            f"cat: {FILES_CHAIN}: No such file or directory",
        ),
    ],
    ids=["five-days-left", "wrong-names", "no-file"],
)
def test_a_certificate_problem_is_an_attention_line(
    ministack: MiniStack, console_images: Images, pem: bytes | None, wanted: str
) -> None:
    nginx = files_nginx(ministack, console_images, pem)
    expected = wanted.format(day=day(pem) if pem else "", nginx=nginx.name)
    result = astats(ministack.name, "status")
    assert result.returncode == 1, result.stdout + result.stderr
    assert attention(result.stdout) == [expected]
    report = json.loads(astats(ministack.name, "status", "--json").stdout)
    assert report["reasons"] == [expected.removeprefix("ATTENTION ")]


def test_the_placeholder_and_a_failing_first_issuance(
    ministack: MiniStack, console_images: Images
) -> None:
    acme_nginx(ministack, console_images, placeholder())
    next_attempt = datetime.now(UTC) + timedelta(minutes=40)
    said = record(
        placeholder=True,
        served_matches=False,
        last_success=None,
        last_error=LEGO_ERROR,
        next_attempt=iso(next_attempt),
        attempts_failed=2,
    )
    client = acme_client(ministack, console_images, said, healthy=False)
    ministack.wait_for(client, "unhealthy")

    result = astats(ministack.name, "status")
    assert result.returncode == 1, result.stdout + result.stderr
    assert line_starting(result.stdout, "certificate") == (
        "certificate (acme): the self-signed placeholder, until the first certificate is obtained"
    )
    upcoming = f"{next_attempt:%Y-%m-%d %H:%M} UTC (in 39m"
    client_line = line_starting(result.stdout, "acme client: ")
    assert client_line.startswith(
        f"acme client: 2 failed attempts, none obtained: {LEGO_ERROR}; next attempt {upcoming}"
    )
    lines = attention(result.stdout)
    # The container's own line says it is unhealthy; the certificate's lines do not repeat it.
    assert lines[0] == f"ATTENTION acme: unhealthy: {PLACEHOLDER_HEALTH}"
    assert lines[1] == (
        "ATTENTION certificate: nginx serves the self-signed placeholder: "
        "no certificate has been obtained yet"
    )
    assert lines[2].startswith(
        f"ATTENTION certificate: renewal failing (2 failed attempts, none obtained: {LEGO_ERROR}; "
        f"next attempt {upcoming}"
    )
    assert len(lines) == 3

    acme = json.loads(astats(ministack.name, "status", "--json").stdout)["tls"]["acme"]
    assert (acme["state"], acme["health"], acme["health_output"]) == (
        "running",
        "unhealthy",
        PLACEHOLDER_HEALTH,
    )
    assert (acme["placeholder"], acme["served_matches"], acme["last_success"]) == (
        True,
        False,
        None,
    )
    assert (acme["last_error"], acme["attempts_failed"]) == (LEGO_ERROR, 2)
    assert acme["next_attempt"] == next_attempt.replace(microsecond=0).isoformat()
    assert acme["problem"] is None


def test_an_acme_stack_without_its_client_running(
    ministack: MiniStack, console_images: Images
) -> None:
    acme_nginx(ministack, console_images, chain())
    result = astats(ministack.name, "status")
    assert result.returncode == 1, result.stdout + result.stderr
    assert attention(result.stdout) == [
        "ATTENTION certificate: no ACME client (astats.service=acme) in the stack: "
        "nothing renews it"
    ]
    assert "acme client: no acme container in this stack" in result.stdout

    acme_client(ministack, console_images, record(), start=False)
    result = astats(ministack.name, "status")
    assert result.returncode == 1, result.stdout + result.stderr
    assert attention(result.stdout) == ["ATTENTION acme: not running (created)"]
    assert "acme client: not running (created)" in result.stdout.splitlines()


@pytest.fixture(scope="session")
def acme_image(console_images: Images, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The client's image from docker/acme, on the base image console_images built."""
    return images.acme_image(images.bookworm_base(tmp_path_factory.mktemp("bookworm")))


def test_the_real_client_failing_its_first_issuance(
    ministack: MiniStack, console_images: Images, acme_image: str
) -> None:
    certs = ministack.volume("certs", "acme")
    client = ministack.create(
        "acme",
        acme_image,
        ["run"],
        environment={
            "ACME_DOMAINS": " ".join(DOMAINS),
            # Nothing listens there: lego fails at once, as with a directory out of reach.
            "ACME_DIRECTORY": "https://127.0.0.1:9/directory",
            "ACME_EMAIL": "ops@astats.example.org",
        },
        volumes={certs: CERTS_DIR},
    )
    ministack.wait_for_log(client, "not obtained")
    labels = tls_labels("acme", ACME_CHAIN)
    ministack.create(
        "nginx", console_images.python, ["sleep", "600"], labels=labels, volumes={certs: ACME_DIR}
    )
    said = json.loads(client.exec_run([PROGRAM, "status"]).output)
    assert said["placeholder"] is True and said["attempts_failed"] == 1, said

    result = astats(ministack.name, "status")
    assert result.returncode == 1, result.stdout + result.stderr
    assert line_starting(result.stdout, "certificate") == (
        "certificate (acme): the self-signed placeholder, until the first certificate is obtained"
    )
    lines = attention(result.stdout)
    assert lines[0] == (
        "ATTENTION certificate: nginx serves the self-signed placeholder: "
        "no certificate has been obtained yet"
    )
    assert lines[1].startswith(
        f"ATTENTION certificate: renewal failing (1 failed attempt, none obtained: "
        f"{said['last_error']}; next attempt "
    )
    assert len(lines) == 2, lines

    acme = json.loads(astats(ministack.name, "status", "--json").stdout)["tls"]["acme"]
    assert acme["last_error"] == said["last_error"] and "connection refused" in acme["last_error"]
    assert acme["next_attempt"] == said["next_attempt"].replace("Z", "+00:00")
    assert acme["last_attempt"] == said["last_attempt"].replace("Z", "+00:00")
    assert (acme["placeholder"], acme["served_matches"], acme["last_success"]) == (
        True,
        False,
        None,
    )


def certificate_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.split()[1:2] == ["certificate"]]


def test_watch_reports_certificate_problems_when_they_start_and_when_they_end(
    ministack: MiniStack, console_images: Images, receiver: Receiver
) -> None:
    expiring = chain(days_left=5)
    nginx = acme_nginx(ministack, console_images, expiring)
    failing = record(attempts_failed=1, last_error=LEGO_ERROR)
    client = acme_client(ministack, console_images, failing)
    ministack.wait_for(client, "healthy")
    watch = Running(ministack.name, "watch", "--webhook", receiver.url, "--check-every", "1s")
    try:
        lines = watch.wait_for(lambda got: len(certificate_lines(got)) >= 2)
        started = certificate_lines(lines)
        assert any(
            f" certificate nginx ({nginx.name}): expires {day(expiring)} (5 days left): "
            "the ACME client should have renewed it (astats logs acme)" in line
            for line in started
        ), started
        assert any(
            f" certificate acme ({client.name}): renewal failing (1 failed attempt, " in line
            and LEGO_ERROR in line
            for line in started
        ), started

        # The client renews: a new release is current and its record says so.
        serve(ministack, nginx, chain(days_left=89), "renewed")
        ministack.upload(client, {RECORD: (json.dumps(record()), 0o644)})
        lines = watch.wait_for(lambda got: len(certificate_lines(got)) >= 4)
        # Two checks more: nothing further is reported.
        time.sleep(2.5)
        lines = watch.wait_for(lambda got: True)
        reports = certificate_lines(lines)
        assert len(reports) == 4, reports
        assert sorted(line.split(": ", 1)[1] for line in reports[2:]) == sorted(
            f"resolved: {line.split(': ', 1)[1]}" for line in started
        )
        deadline = time.monotonic() + WAIT_S
        while len(receiver.bodies) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        watch.stop()
    posts = [(b["kind"], b["service"], b["resolved"]) for b in receiver.bodies]
    assert sorted(posts) == [
        ("certificate", "acme", False),
        ("certificate", "acme", True),
        ("certificate", "nginx", False),
        ("certificate", "nginx", True),
    ]
    assert all(body["stack"] == ministack.name for body in receiver.bodies)
    assert {b["text"] for b in receiver.bodies} == set(reports)

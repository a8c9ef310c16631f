"""What the console makes of a served certificate and the acme client's record: the lines that
need attention, and watch's reports of their start and end."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from astats_console.certificates import (
    ACME_STATUS,
    acme_record,
    certificate_problems,
    name_mismatch,
    parse_chain,
)
from astats_console.facts import AcmeFacts, StackFacts, TlsFacts
from astats_console.reasons import Thresholds, attention_reasons
from astats_console.watchrules import Rules
from components.acme import PROGRAM
from tests.console.certs import CA_ISSUER, DOMAINS, chain, placeholder

THRESHOLDS = Thresholds()
CLIENT = AcmeFacts(
    container="astats-prod-acme-1", state="running", health="healthy", health_output=None
)


def tls(pem: bytes | None, mode: str = "files", **changes: Any) -> TlsFacts:
    facts = TlsFacts(
        mode=mode,
        domains=DOMAINS,
        path="/etc/nginx/astats/tls-fullchain.pem",
        nginx="astats-prod-nginx-1",
        certificate=parse_chain(pem) if pem is not None else None,
        acme=CLIENT if mode == "acme" else None,
    )
    return replace(facts, **changes)


def texts(facts: TlsFacts, now: datetime | None = None) -> list[str]:
    return [p.text for p in certificate_problems(facts, now or datetime.now(UTC))]


def test_the_leaf_of_the_served_chain_is_read() -> None:
    cert = parse_chain(chain(days_left=60))
    assert cert.names == DOMAINS
    assert cert.issuer == CA_ISSUER
    assert cert.chain_length == 2 and not cert.placeholder
    assert (cert.not_after - datetime.now(UTC)).days == 60
    assert parse_chain(placeholder()).placeholder
    with pytest.raises(ValueError):
        parse_chain(b"not a certificate")


def test_a_valid_certificate_for_exactly_the_domains_needs_nothing() -> None:
    assert texts(tls(chain(days_left=60))) == []
    assert texts(tls(chain(days_left=14))) == []


def test_under_fourteen_days_left_needs_attention_and_says_what_to_do() -> None:
    files = tls(chain(days_left=5))
    [text] = texts(files)
    assert text.startswith("expires ") and "(5 days left)" in text
    assert text.endswith("install a renewed one (tlsCertificate, tlsPrivateKey) and run pulumi up")
    [acme] = texts(tls(chain(days_left=13), "acme"))
    assert "(13 days left): the ACME client should have renewed it (astats logs acme)" in acme
    later = datetime.now(UTC) + timedelta(days=6)
    [expired] = texts(files, later)
    assert expired.startswith("expired ") and "ago)" in expired


def test_names_that_differ_from_the_domains_are_named() -> None:
    wrong = tls(chain(("astats.example.org", "old.example.org")))
    assert texts(wrong) == [
        "its names do not match tls.domains: missing www.astats.example.org; extra old.example.org"
    ]
    assert name_mismatch(("*.example.org",), ("a.example.org", "b.example.org")) == ([], [])
    assert name_mismatch(("*.example.org",), ("example.org", "a.b.example.org")) == (
        ["example.org", "a.b.example.org"],
        ["*.example.org"],
    )
    assert name_mismatch(("WWW.Example.org",), ("www.example.org",)) == ([], [])


def test_the_placeholder_is_one_problem_not_three() -> None:
    assert texts(tls(placeholder(), "acme")) == [
        "nginx serves the self-signed placeholder: no certificate has been obtained yet"
    ]


def test_a_failing_renewal_says_its_error_and_next_attempt() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    record = {
        "domains": list(DOMAINS),
        "placeholder": False,
        "served_matches": True,
        "last_attempt": "2026-12-03T11:50:00Z",
        "last_success": "2026-10-01T08:00:00Z",
        "last_error": "acme: error: 400 :: urn:ietf:params:acme:error:connection",
        "next_attempt": "2026-12-03T13:20:00Z",
        "attempts_failed": 3,
        "failed_request": "https://acme.example/dir astats.example.org",
    }
    acme = acme_record(CLIENT, json.dumps(record))
    assert acme.next_attempt == datetime(2026, 12, 3, 13, 20, tzinfo=UTC)
    failing = tls(chain(), "acme", acme=acme)
    assert texts(failing, now) == [
        "renewal failing (3 failed attempts, last success 2026-10-01 08:00 UTC: acme: error: "
        "400 :: urn:ietf:params:acme:error:connection; next attempt 2026-12-03 13:20 UTC "
        "(in 1h20m))"
    ]
    # A success resets the count; an old error text left in the record is no failure.
    recovered = acme_record(CLIENT, json.dumps({**record, "attempts_failed": 0}))
    assert texts(tls(chain(), "acme", acme=recovered), now) == []


def test_an_unreadable_record_is_a_problem_of_its_own() -> None:
    acme = acme_record(CLIENT, "lego: command not found\n")
    assert acme.problem == "astats-acme status printed no JSON object: lego: command not found"
    assert texts(tls(chain(), "acme", acme=acme)) == [acme.problem]


def test_the_acme_client_missing_stopped_or_unhealthy() -> None:
    assert texts(tls(chain(), "acme", acme=None)) == [
        "no ACME client (astats.service=acme) in the stack: nothing renews it"
    ]
    stopped = tls(chain(), "acme", acme=replace(CLIENT, state="exited"))
    assert texts(stopped) == ["the ACME client is not running (exited): nothing renews it"]
    sick = tls(chain(), "acme", acme=replace(CLIENT, health="unhealthy", health_output="boom"))
    assert texts(sick) == ["the ACME client is unhealthy: boom"]
    # status has the container's own line for those two: it does not say them twice.
    now = datetime.now(UTC)
    assert certificate_problems(stopped, now, client_state=False) == []
    assert certificate_problems(sick, now, client_state=False) == []


def test_status_names_each_certificate_problem() -> None:
    now = datetime.now(UTC)
    facts = StackFacts("prod", now, [], None, tls=tls(chain(("old.example.org",), days_left=3)))
    reasons = attention_reasons(facts, THRESHOLDS)
    expiring, names = reasons
    assert expiring.startswith("certificate: expires ") and "(3 days left)" in expiring
    assert names == (
        "certificate: its names do not match tls.domains: "
        "missing astats.example.org www.astats.example.org; extra old.example.org"
    )
    report = facts.to_json(reasons)
    assert report["tls"]["certificate"]["days_left"] == 3
    assert report["tls"]["certificate"]["names"] == ["old.example.org"]
    assert report["tls"]["certificate"]["issuer"] == CA_ISSUER
    assert StackFacts("prod", now, [], None).to_json([])["tls"] is None


def test_watch_reports_a_problem_when_it_starts_and_when_it_ends() -> None:
    rules = Rules(THRESHOLDS)
    now = datetime.now(UTC)
    expiring = tls(chain(days_left=5))
    [started] = rules.on_certificates(expiring, now)
    assert (started.kind, started.service, started.container) == (
        "certificate",
        "nginx",
        "astats-prod-nginx-1",
    )
    assert not started.resolved
    assert rules.on_certificates(expiring, now + timedelta(hours=1)) == []
    # nginx stopped: nothing was read, so nothing has ended.
    unread = replace(expiring, certificate=None)
    assert rules.on_certificates(unread, now + timedelta(hours=2)) == []
    renewed = tls(chain(days_left=60))
    [ended] = rules.on_certificates(renewed, now + timedelta(hours=3))
    assert ended.resolved and ended.message == started.message
    assert ended.line().endswith(
        f"certificate nginx (astats-prod-nginx-1): resolved: {ended.message}"
    )
    assert ended.payload("prod")["resolved"] is True
    assert rules.on_certificates(renewed, now + timedelta(hours=4)) == []


def test_watch_keeps_a_failing_renewal_open_while_the_client_is_down() -> None:
    rules = Rules(THRESHOLDS)
    now = datetime.now(UTC)
    failing = replace(CLIENT, attempts_failed=1, last_error="timeout")
    [renewal] = rules.on_certificates(tls(chain(), "acme", acme=failing), now)
    assert renewal.service == "acme" and renewal.message.startswith("renewal failing (1 failed")
    down = tls(chain(), "acme", acme=replace(CLIENT, state="exited"))
    [stopped] = rules.on_certificates(down, now)
    assert stopped.message.startswith("the ACME client is not running") and not stopped.resolved
    ended = rules.on_certificates(tls(chain(), "acme"), now)
    assert sorted(r.message.split(" ")[0] for r in ended) == ["renewal", "the"]
    assert all(r.resolved for r in ended)
    # TLS turned off ends what was open.
    rules.on_certificates(tls(chain(days_left=1)), now)
    [off] = rules.on_certificates(None, now)
    assert off.resolved


def test_the_console_runs_the_program_the_client_image_installs() -> None:
    assert ACME_STATUS == [PROGRAM, "status"]

"""testssl.sh grades the HTTPS nginx serves with the stack's TLS settings: protocols, server
defaults, cipher preference, HTTP headers, each cipher, and every vulnerability check it has.
No finding may be HIGH or CRITICAL; the rest are printed for the record (`pytest -s`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.config import NginxSettings
from components.nginx_conf import Upstreams
from tests.proxy import harness, tls_pki
from tests.proxy.harness import DEFAULT_PREFIXES
from tests.support.ci import unavailable

SCAN_TIMEOUT_S = 240
BLOCKING = {"HIGH", "CRITICAL"}
SCANNER_TROUBLE = {"WARN", "FATAL"}
# Session resumption is informational (no severity) and proved by tests/proxy's own resumption
# test; testssl 3.0's probes of it reconnect several times and lose a connection on a busy
# machine. Their trouble is printed, not counted.
RESUMPTION_PROBES = {"sessionresumption_ticket", "sessionresumption_ID"}
# One id from each part of the scan: a narrower scope would pass for want of checks.
CHECKS_RUN = {
    "TLS1_1",
    "TLS1_3",
    "cipher_order",
    "cert_chain_of_trust",
    "HSTS_time",
    "heartbleed",
    "ROBOT",
    "BREACH",
    "LUCKY13",
}


def find_testssl() -> str:
    found = shutil.which("testssl") or shutil.which("testssl.sh")
    if found is None:
        unavailable("testssl not found; install it with: apt-get install -y testssl.sh")
    return found


@pytest.fixture(scope="module")
def graded_proxy(
    nginx: harness.NginxRunner, loopback_upstreams: Upstreams, pki: tls_pki.Pki
) -> Iterator[harness.Nginx]:
    """nginx with the stack's defaults, HSTS included, and a certificate shaped like
    Let's Encrypt's."""
    tls = harness.TlsFiles(pki.chain_pem, pki.key_pem)
    with harness.run_nginx(
        NginxSettings(), DEFAULT_PREFIXES, loopback_upstreams, runner=nginx, tls=tls
    ) as running:
        yield running


@dataclass(frozen=True)
class Scan:
    findings: list[dict[str, Any]]
    output: str
    """testssl's terminal output, for a failure's message."""

    @property
    def missing(self) -> set[str]:
        return CHECKS_RUN - {f["id"] for f in self.findings}

    @property
    def trouble(self) -> list[dict[str, Any]]:
        return [
            f
            for f in self.findings
            if f["severity"] in SCANNER_TROUBLE and f["id"] not in RESUMPTION_PROBES
        ]

    def why(self) -> str:
        return f"testssl's output ends:\n{self.output[-3000:]}"


def scan(testssl: str, nginx: harness.Nginx, ca: Path, report: Path) -> Scan:
    command = [
        testssl,
        "--quiet",
        "--warnings",
        "off",
        "--color",
        "0",
        "--jsonfile",
        str(report),
        "--add-ca",
        str(ca),
        # The certificate is for localhost; no DNS lookups, which would only time out here.
        "--ip",
        tls_pki.LEAF_ADDRESS,
        "--nodns",
        "none",
        "--protocols",
        "--server-defaults",
        "--server-preference",
        "--headers",
        "--vulnerable",
        "--each-cipher",
        f"{tls_pki.LEAF_NAME}:{nginx.https_port}",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=SCAN_TIMEOUT_S, check=False
    )
    output = result.stdout + result.stderr
    if not report.exists():
        pytest.fail(f"testssl wrote no report (exit {result.returncode}):\n{output}")
    return Scan(json.loads(report.read_text()), output)


def offered_suites(findings: list[dict[str, Any]]) -> set[str]:
    """OpenSSL names of the suites the server accepted, from `--each-cipher`'s rows."""
    return {f["finding"].split()[1] for f in findings if f["id"].startswith("cipher_x")}


def excused(finding: dict[str, Any], suites: set[str]) -> bool:
    """testssl before 3.2 rates a cipher order left to the client HIGH whatever the suites;
    from 3.2 it rates it by the weakest suite accepted, INFO when all are strong. Mozilla has
    the client choose (`ssl_prefer_server_ciphers off`) because every suite it lists is. So
    that finding passes while every accepted suite is one of Mozilla's."""
    return (
        finding["id"] == "cipher_order"
        and finding["finding"] == "NOT a cipher order configured"
        and bool(suites)
        and suites <= harness.MOZILLA_TLS12_SUITES | harness.MOZILLA_TLS13_SUITES
    )


def test_testssl_finds_nothing_high_or_critical(
    graded_proxy: harness.Nginx, test_ca: Path, tmp_path: Path
) -> None:
    testssl = find_testssl()
    result = scan(testssl, graded_proxy, test_ca, tmp_path / "testssl.json")
    if result.missing or result.trouble:
        # On a busy machine a check can lose its connection: one more scan before it counts.
        result = scan(testssl, graded_proxy, test_ca, tmp_path / "testssl-again.json")

    assert not result.missing, f"testssl skipped {sorted(result.missing)}; {result.why()}"
    assert not result.trouble, f"testssl could not complete {result.trouble}; {result.why()}"
    findings = result.findings
    suites = offered_suites(findings)
    assert suites, "the cipher listing is empty"
    blocking = [f for f in findings if f["severity"] in BLOCKING and not excused(f, suites)]
    remaining = [f for f in findings if f["severity"] not in {"OK", "INFO"}]
    print(f"\n{graded_proxy.runner.label}: testssl findings above INFO")
    for finding in remaining:
        note = " (excused: testssl < 3.2, see excused())" if excused(finding, suites) else ""
        print(f"  {finding['severity']:<8} {finding['id']}: {finding['finding']}{note}")
    assert not blocking, "\n".join(f"{f['severity']} {f['id']}: {f['finding']}" for f in blocking)

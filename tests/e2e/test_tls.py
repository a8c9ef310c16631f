"""HTTPS on the real engine: a stack with `tls.mode: acme` against pebble (Let's Encrypt's test
CA) comes up from nothing serving a certificate pebble issued through nginx's HTTP-01 path, and
a backend rollout over HTTPS fails no request.

The stack is its own (not the suite's shared one): a cold `up` with ACME is what is tested.
pebble runs on the host; the ACME client reaches it at the address of Docker's default bridge,
which its listener certificate names, and pebble's DNS answers the stack's host name with
127.0.0.1, so it validates on the port nginx publishes HTTP on, as Let's Encrypt does on 80.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509

from tests.docker.acme_support import Pebble, served_certificate
from tests.docker.images import BASE_TAG
from tests.e2e.conftest import free_port, remove_stack_leftovers, write_stack_config
from tests.e2e.engine import Project
from tests.e2e.images import StandIns
from tests.e2e.traffic import SteadyLoad

HOST = "astats.e2e.test"


@dataclass
class TlsDeployment:
    project: Project
    pebble: Pebble
    http_port: int
    https_port: int

    def trusting_pebble(self) -> ssl.SSLContext:
        """A client context that trusts pebble's root alone."""
        return ssl.create_default_context(cadata=self.pebble.root())


def docker_bridge_gateway() -> str:
    """The host's address on Docker's default bridge, which every container can reach: its
    gateway, or (when the engine does not record one) the subnet's first address, which
    Docker gives the bridge."""
    inspected = subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = json.loads(inspected)[0]
    return str(config.get("Gateway") or ipaddress.ip_network(config["Subnet"])[1])


@pytest.fixture(scope="module")
def tls_deployment(images: StandIns) -> Iterator[TlsDeployment]:
    stack = f"e2e-tls-{secrets.token_hex(3)}"
    scratch = Path(tempfile.mkdtemp(prefix="astats-e2e-tls-"))
    project = Project.create(scratch, stack)
    http_port, https_port = free_port(), free_port()
    pebble = Pebble(scratch, docker_bridge_gateway(), http_port)
    try:
        pebble.start()
        project.init()
        write_stack_config(project, images, http_port)
        path = project.root / f"Pulumi.{stack}.yaml"
        config = yaml.safe_load(path.read_text())
        config["config"]["astats:publicHost"] = HOST
        config["config"]["astats:tls"] = {
            "mode": "acme",
            "httpsPort": https_port,
            "acme": {
                "email": "ops@astats.e2e.test",
                "directoryUrl": pebble.directory_url,
                "directoryCa": pebble.ca_pem,
                # pebble issues 10-day certificates; no renewal during the test.
                "renewBeforeDays": 1,
                "retryMinS": 5,
                "retryMaxS": 60,
                "image": BASE_TAG,
            },
        }
        path.write_text(yaml.safe_dump(config, sort_keys=True))
        project.set_config("astats:dbPassword", secrets.token_urlsafe(24), secret=True)
        project.set_config("astats:secretKey", secrets.token_urlsafe(32), secret=True)
        yield TlsDeployment(project, pebble, http_port, https_port)
    finally:
        project.destroy(check=False)
        project.remove_stack()
        remove_stack_leftovers(stack)
        pebble.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_cold_up_ends_serving_a_certificate_from_the_acme_server(
    tls_deployment: TlsDeployment,
) -> None:
    result = tls_deployment.project.up(check=False)
    assert result.returncode == 0, result.output[-3000:] + tls_deployment.pebble.logs()[-2000:]
    served = served_certificate(tls_deployment.https_port, HOST, tls_deployment.pebble.root())
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [HOST]
    with httpx.Client(
        base_url=f"https://127.0.0.1:{tls_deployment.https_port}",
        verify=tls_deployment.trusting_pebble(),
        headers={"Host": HOST},
        timeout=10,
    ) as client:
        answer = client.get("/api/db", extensions={"sni_hostname": HOST})
        assert answer.status_code == 200, answer.text
        assert answer.headers["strict-transport-security"].startswith("max-age=")
    plain = httpx.get(
        f"http://127.0.0.1:{tls_deployment.http_port}/api/db?x=1", headers={"Host": HOST}
    )
    assert plain.status_code in (301, 308)
    assert plain.headers["location"] == f"https://{HOST}:{tls_deployment.https_port}/api/db?x=1"


def test_the_console_shows_the_certificate_in_use(tls_deployment: TlsDeployment) -> None:
    stack = tls_deployment.project.stack
    shown = subprocess.run(
        [sys.executable, "-m", "astats_console", "--stack", stack, "status", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    status = json.loads(shown.stdout)
    tls = status["tls"]
    assert tls["mode"] == "acme" and tls["domains"] == [HOST]
    certificate = tls["certificate"]
    assert certificate["names"] == [HOST]
    assert certificate["placeholder"] is False
    assert "Pebble" in certificate["issuer"], certificate["issuer"]
    acme = tls["acme"]
    assert acme["served_matches"] is True
    assert acme["attempts_failed"] == 0 and acme["last_error"] is None
    # pebble's certificates live 10 days: under the 14 days that need attention.
    assert certificate["days_left"] < 14
    assert any("days left" in reason for reason in status["reasons"]), status["reasons"]
    assert shown.returncode == 1


def test_a_backend_rollout_over_https_fails_no_request(tls_deployment: TlsDeployment) -> None:
    project = tls_deployment.project
    project.set_config("astats:backend.env.E2E_TLS_ROUND", "1", path=True)
    with SteadyLoad(
        f"https://127.0.0.1:{tls_deployment.https_port}",
        ("/api/db", "/health"),
        interval_s=0.025,
        timeout_s=2,
        verify=tls_deployment.trusting_pebble(),
        server_name=HOST,
    ) as load:
        project.up()
    report = load.report
    print(
        f"TLS rollout: {report.requests} requests, {len(report.failures)} failed, "
        f"{len(report.resent)} resent, "
        f"max {report.max_s:.3f} s, p99 {report.p99_s:.3f} s"
    )
    assert report.requests > 50
    assert report.failures == [], report.failures[:10]
    assert report.slower_than(1.0) == 0, sorted(report.latencies_s)[-5:]
    preview = project.run("preview", "--expect-no-changes", check=False)
    assert preview.returncode == 0, preview.output[-3000:]

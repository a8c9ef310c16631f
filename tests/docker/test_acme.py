"""Certificates by ACME, for real: the client's image (docker/acme) obtains and renews them from
pebble, Let's Encrypt's test CA, through nginx's HTTP-01 webroot, and nginx serves them.

The client's container is the program's (components/acme.py on Pulumi's mocks: its flags,
environment, CA file and PIDs limit); pebble and its DNS run on the host (tests/docker/
acme_support.py); nginx is the stand-in for the official image with the program's nginx.conf
(the ACME challenge path from the webroot volume, HTTPS from the certs volume's `current`
pair) and entrypoint script, whose watcher reloads nginx when the certificate changes. Each
test has its own pebble, network, volumes and containers.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from components.acme import ACME_USER, CERTS_DIR, WEBROOT_DIR
from tests.docker import images
from tests.docker.acme_support import DOMAINS, AcmeRig, acme_rig, https_get, require_pebble
from tests.docker.acme_support import served_certificate as served
from tests.e2e import images as e2e_images
from tests.proxy.nginx_image import nginx_image
from tests.support.ci import unavailable
from tests.support.debian_images import built_once_per_run, image_exists

# Until the renewed pair is served, then this much longer.
LOAD_AFTER_SWAP_S = 1.0
LOAD_PERIOD_S = 0.025


@dataclass(frozen=True)
class AcmeImages:
    acme: str
    nginx: str


@pytest.fixture(scope="session")
def acme_images(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> AcmeImages:
    require_pebble()
    if not image_exists(images.BASE_TAG) and shutil.which("debootstrap") is None:
        unavailable("debootstrap is needed for the base image (apt-get install -y debootstrap)")
    base = images.bookworm_base(tmp_path_factory.mktemp("bookworm"))

    def official_nginx() -> None:
        e2e_images.nginx_standin(nginx_image())

    nginx = built_once_per_run("nginx-official-image", e2e_images.NGINX_TAG, official_nginx)
    return AcmeImages(acme=images.acme_image(base), nginx=nginx)


@pytest.fixture
def rig(acme_images: AcmeImages, tmp_path: Path) -> Iterator[AcmeRig]:
    with acme_rig(acme_images.acme, acme_images.nginx, tmp_path) as stack:
        yield stack


def issued(rig: AcmeRig) -> None:
    """The client's first certificate obtained and served (nginx reloaded onto it)."""
    rig.start_acme(renewBeforeDays=1)
    deadline = time.monotonic() + 90
    while (health := rig.acme_exec("health")).returncode != 0:
        assert time.monotonic() < deadline, health.stderr
        time.sleep(0.2)


def iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_the_first_certificate_is_obtained_through_nginx_and_served(rig: AcmeRig) -> None:
    placeholder = served(rig.https_port, DOMAINS[0])
    assert "astats-acme placeholder" in placeholder.subject.rfc4514_string()

    rig.start_acme(renewBeforeDays=1)
    # What `pulumi up` waits for: Docker's health check, which is the client's `health`.
    deadline = time.monotonic() + 90
    while rig.health_status() != "healthy":
        assert time.monotonic() < deadline, f"never healthy: {rig.health_status()}"
        time.sleep(0.5)
    assert "changed; reloaded" in rig.nginx_logs()
    obtained = rig.status()
    assert rig.acme_exec("health").returncode == 0
    # Healthy means served: asked of a server with another certificate (pebble's), it is not.
    pebble = rig.pebble_started()
    pebble_address = f"{pebble.gateway}:{pebble.port}"
    elsewhere = rig.acme_exec("health", env={"ACME_SERVED_ADDRESS": pebble_address})
    assert elsewhere.returncode == 1
    assert "does not serve the current certificate" in elsewhere.stderr

    root = pebble.root()
    for domain in DOMAINS:
        # Verified against pebble's root alone, the host name included.
        assert https_get(rig.https_port, domain, cadata=root) == obtained_serial(obtained)
    status = rig.status()
    assert status["domains"] == list(DOMAINS)
    assert status["covers_domains"] is True
    assert "Pebble Intermediate CA" in status["issuer"]
    assert status["placeholder"] is False
    assert status["served_matches"] is True
    assert 8 <= status["days_left"] <= 10
    assert status["last_error"] is None
    assert status["attempts_failed"] == 0
    assert status["last_success"] is not None
    assert iso(status["last_attempt"]) <= iso(status["last_success"])
    # The next check is the configured interval (720 minutes) after the success.
    assert iso(status["next_attempt"]) - iso(status["last_success"]) == 720 * 60
    not_after = served(rig.https_port, DOMAINS[0]).not_valid_after_utc.timestamp()
    assert iso(status["not_after"]) == not_after
    # One line for the issuance, nothing of lego's chatter.
    assert sum("obtained" in line for line in rig.logs()) == 1
    assert not [line for line in rig.logs() if "[INFO]" in line]


def obtained_serial(status: dict[str, object]) -> int:
    return int(str(status["serial"]), 16)


@dataclass
class Load:
    """A new verified HTTPS connection and request every LOAD_PERIOD_S, until stopped."""

    port: int
    root: str
    served: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.served.append(https_get(self.port, DOMAINS[0], self.root, timeout_s=2))
            except Exception as error:
                self.failures.append(repr(error))
            self.stop.wait(LOAD_PERIOD_S)


def test_a_renewal_is_served_after_nginx_reloads_without_a_failed_request(rig: AcmeRig) -> None:
    issued(rig)
    first = rig.status()
    before = rig.current_release()
    load = Load(rig.https_port, rig.pebble_started().root())
    worker = threading.Thread(target=load.run)
    worker.start()
    try:
        # 10-day certificates renewed under 30 days left: the new client renews at once.
        rig.start_acme(renewBeforeDays=30)
        rig.wait_for_log("obtained")
        assert rig.current_release() != before
        renewed = obtained_serial(rig.status())
        deadline = time.monotonic() + 30
        while not load.served or load.served[-1] != renewed:
            assert time.monotonic() < deadline, "the renewed certificate is never served"
            time.sleep(0.05)
        time.sleep(LOAD_AFTER_SWAP_S)
    finally:
        load.stop.set()
        worker.join()
    assert load.failures == []
    assert len(load.served) >= 20, "too few requests to call it a load"
    assert obtained_serial(first) != renewed
    assert load.served[0] == obtained_serial(first)
    assert set(load.served) == {obtained_serial(first), renewed}
    # The log says why it renewed.
    assert any("obtained (9 days left)" in line for line in rig.logs())
    assert rig.nginx_logs().count("changed; reloaded") == 2
    assert rig.acme_exec("health").returncode == 0


def test_a_failed_renewal_backs_off_and_keeps_the_valid_certificate(rig: AcmeRig) -> None:
    issued(rig)
    before_release = rig.current_release()
    before_serial = served(rig.https_port, DOMAINS[0]).serial_number
    rig.pebble_started().stop()

    rig.start_acme(renewBeforeDays=30)
    rig.wait_for_log("not obtained")
    failure = [line for line in rig.logs() if "not obtained" in line]
    assert len(failure) == 1
    assert "connection refused" in failure[0]
    assert "failed attempt 1, next in 5s" in failure[0]
    first = rig.status_file()
    assert first["attempts_failed"] == 1
    assert "connection refused" in first["last_error"]
    assert iso(first["next_attempt"]) - iso(first["last_attempt"]) >= 5

    # The backoff doubles: retryMinS 5, then 10.
    rig.wait_for_log("not obtained", count=2)
    second = rig.status_file()
    assert second["attempts_failed"] == 2
    assert "failed attempt 2, next in 10s" in rig.logs()[-1]

    assert rig.current_release() == before_release
    assert served(rig.https_port, DOMAINS[0]).serial_number == before_serial
    health = rig.acme_exec("health")
    assert health.returncode == 0, health.stderr
    status = rig.status()
    assert status["served_matches"] is True
    assert status["last_success"] is not None
    assert status["last_error"] == second["last_error"]


def test_the_client_runs_read_only_without_capabilities_as_its_user(rig: AcmeRig) -> None:
    # The first test obtains a certificate under these limits; here they are looked at.
    rig.start_acme()
    rig.wait_for_log("checking")
    inspect = rig.inspect_acme()
    host = inspect["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert host["Privileged"] is False
    assert inspect["Config"]["User"] == ACME_USER
    mounts = {m["Destination"]: m for m in inspect["Mounts"]}
    assert set(mounts) == {CERTS_DIR, WEBROOT_DIR, "/run/astats-acme"}
    assert not any("docker.sock" in m.get("Source", "") for m in inspect["Mounts"])

    inside = rig.in_acme(
        "id -u; id -g; grep CapEff /proc/self/status; "
        "touch /probe 2>&1 || echo refused; "
        "test -e /var/run/docker.sock && echo socket || echo no-socket; "
        "stat -c '%a %U' " + CERTS_DIR + "/lego " + CERTS_DIR + "/current/privkey.pem"
    )
    lines = inside.splitlines()
    assert lines[:2] == ["10002", "101"]
    assert lines[2].split() == ["CapEff:", "0000000000000000"]
    assert "Read-only file system" in lines[3]
    assert "no-socket" in lines
    assert "700 astats-acme" in lines
    assert "640 astats-acme" in lines


def test_a_failed_first_issuance_keeps_the_placeholder_and_says_why(rig: AcmeRig) -> None:
    # pebble's validation reaches no nginx: the challenge cannot be answered.
    rig.stop_nginx()
    rig.start_acme()
    rig.wait_for_log("not obtained")
    [failure] = [line for line in rig.logs() if "not obtained" in line]
    assert "(first issuance; failed attempt 1, next in 5s" in failure
    assert "urn:ietf:params:acme:error:connection" in failure
    status = rig.status()
    assert status["placeholder"] is True
    assert status["last_success"] is None
    assert "urn:ietf:params:acme:error:connection" in status["last_error"]
    health = rig.acme_exec("health")
    assert health.returncode == 1
    assert "the placeholder is current" in health.stderr

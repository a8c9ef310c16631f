"""What the ACME client meets in a stack, for real: pebble (Let's Encrypt's test CA) and its DNS
(pebble-challtestsrv); nginx with the program's config (HTTPS from the certs volume's `current`
pair, the HTTP-01 webroot on plain HTTP), started by its entrypoint script, whose watcher
reloads it when the certificate changes; and the client's container with the flags,
environment and files the program registers for it (components/acme.py, on Pulumi's mocks).

pebble runs on the host. The client reaches it through the test network's gateway, so pebble's
listener certificate, made here with a CA of its own (given to the client as
`tls.acme.directoryCa`), names that address. pebble's DNS answers every name with 127.0.0.1,
so it validates HTTP-01 on the host port nginx publishes HTTP on, as Let's Encrypt would on 80.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from cryptography import x509

from components.acme import CERTS_DIR, PROGRAM, WEBROOT_DIR, acme_spec, placeholder_step
from components.config import (
    NGINX_HEALTH_PATH,
    HstsSettings,
    LoggingSettings,
    NginxSettings,
    StackSettings,
)
from components.container import NetworkNames, StackContext, VolumeNames, service_container
from components.nginx import (
    CONFIG_PATH,
    LISTEN_PORT,
    NGINX_COMMAND,
    RUN_SCRIPT,
    RUNTIME,
    nginx_scratch,
)
from components.nginx_conf import TlsConf, Upstreams, render_nginx_conf
from components.switch import NGINX_USER
from tests.proxy.harness import free_port
from tests.pulumi_harness import COMMAND, Graph, register
from tests.support.ci import unavailable
from tests.support.docker import create_args, create_flags, docker, hardened, run_step
from tests.support.pki import server_certificate

PEBBLE = "pebble"
CHALLTESTSRV = "pebble-challtestsrv"
PEBBLE_INSTALL = (
    "GOBIN=/usr/local/bin go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3 "
    "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v2.10.3 (see .ci/run)"
)
DOMAINS = ("stats.astats.example", "www.astats.example")
EMAIL = "ops@astats.example"
# Short-lived, as Let's Encrypt's are getting: renewing under 30 days left renews at once.
CERT_LIFETIME_DAYS = 10
NGINX_TLS_DIR = "/etc/nginx/astats-tls"
HTTPS_PORT = 8443
# What nginx's watcher (components/files/nginx-run.sh) looks at for a renewed certificate;
# checked every second here (5 s by default).
WATCHED = f"{NGINX_TLS_DIR}/current/fullchain.pem"
WATCH_INTERVAL_S = 1
# Nothing listens there: the tests ask nginx's own health path, which it answers itself.
NO_UPSTREAM = "127.0.0.1:9"


def nginx_conf(public_https_port: int) -> str:
    """The program's nginx.conf with HTTPS from the certs volume's `current` pair and the
    ACME challenge path from the webroot volume."""
    tls = TlsConf(
        certificate=WATCHED,
        certificate_key=f"{NGINX_TLS_DIR}/current/privkey.pem",
        listen_port=HTTPS_PORT,
        public_port=public_https_port,
        hsts=HstsSettings(),
        acme_webroot=WEBROOT_DIR,
    )
    return render_nginx_conf(
        NginxSettings(),
        StackSettings().backend.api_prefixes,
        Upstreams(NO_UPSTREAM, NO_UPSTREAM),
        listen_port=LISTEN_PORT,
        runtime=RUNTIME,
        tls=tls,
    )


def require_pebble() -> None:
    for program in (PEBBLE, CHALLTESTSRV):
        if shutil.which(program) is None:
            unavailable(f"{program} is not installed: {PEBBLE_INSTALL}")


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass
class Pebble:
    """pebble and its DNS on the host, for one test."""

    workdir: Path
    gateway: str
    """The address containers on the test network reach the host by."""
    http_port: int
    """Where pebble validates HTTP-01 (on 127.0.0.1): the port nginx publishes HTTP on."""
    ca_pem: str = ""
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def directory_url(self) -> str:
        return f"https://{self.gateway}:{self.port}/dir"

    def start(self) -> None:
        listener = server_certificate(
            self.workdir, "listener", "pebble", [self.gateway, "127.0.0.1"]
        )
        self.ca_pem = listener.ca.read_text()
        cert, key = listener.cert, listener.key
        dns_port, challenge_port = free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"0.0.0.0:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": self.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "profiles": {
                    "default": {
                        "description": "short-lived",
                        "validityPeriod": CERT_LIFETIME_DAYS * 86400,
                    }
                },
            }
        }
        config_path = self.workdir / "pebble.json"
        config_path.write_text(json.dumps(config))
        self._spawn(
            "challtestsrv",
            [
                CHALLTESTSRV,
                "-defaultIPv4=127.0.0.1",
                "-defaultIPv6=",
                f"-dnsserver=127.0.0.1:{dns_port}",
                f"-management=127.0.0.1:{challenge_port}",
                "-http01=",
                "-https01=",
                "-tlsalpn01=",
                "-doh=",
            ],
            {},
        )
        self._spawn(
            "pebble",
            [PEBBLE, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns_port}"],
            # Every order is validated anew, renewals too (through nginx, under load).
            {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"},
        )
        wait_until("pebble's directory", self._answers, timeout_s=30)

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        program = shutil.which(argv[0])
        assert program is not None, f"{argv[0]} is not installed: {PEBBLE_INSTALL}"
        process = subprocess.Popen(
            [program, *argv[1:]], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
        self._processes.append(process)

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)

    def _answers(self) -> bool:
        for process in self._processes:
            if process.poll() is not None:
                raise AssertionError(f"{process.args!r} exited: {self.logs()}")
        try:
            url = f"https://127.0.0.1:{self.port}/dir"
            with urllib.request.urlopen(url, context=self._context(), timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def root(self) -> str:
        """The root every certificate pebble issues chains to (a new one each start)."""
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=self._context(), timeout=5) as answer:
            return str(answer.read().decode())

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.workdir.glob("*.log")))


def served_certificate(port: int, server_name: str, cadata: str | None = None) -> x509.Certificate:
    """The certificate the HTTPS server on 127.0.0.1:`port` hands out for `server_name`;
    with `cadata`, verified against that root alone, host name included."""
    if cadata is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cadata=cadata)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def https_get(port: int, server_name: str, cadata: str, timeout_s: float = 2) -> int:
    """One request over a new verified connection, as a browser's first; the certificate's
    serial number. Raises on any failure (connection, handshake, verification, status)."""
    context = ssl.create_default_context(cadata=cadata)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        request = f"GET {NGINX_HEALTH_PATH} HTTP/1.1\r\nHost: {server_name}\r\n"
        tls.sendall(f"{request}Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
        der = tls.getpeercert(binary_form=True)
    if not answer.startswith(b"HTTP/1.1 200 "):
        raise AssertionError(f"unexpected answer: {answer[:80]!r}")
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@dataclass
class AcmeRig:
    """One test's stack around the ACME client: a network that reaches the host, the certs,
    webroot and files volumes, pebble, nginx serving what `current` holds, and the client."""

    image: str
    nginx_image: str
    workdir: Path
    name: str = field(default_factory=lambda: f"acmet{uuid.uuid4().hex[:8]}")
    http_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    pebble: Pebble | None = None
    acme: str | None = None
    """The client's running container, once started."""
    _volumes: set[str] = field(default_factory=set)

    @property
    def network(self) -> str:
        return f"astats-{self.name}-edge"

    @property
    def certs(self) -> str:
        return f"astats-{self.name}-acme-certs"

    @property
    def webroot(self) -> str:
        return f"astats-{self.name}-acme-webroot"

    @property
    def nginx(self) -> str:
        return f"astats-{self.name}-nginx"

    def pebble_started(self) -> Pebble:
        assert self.pebble is not None
        return self.pebble

    def up(self) -> None:
        """Network, volumes, pebble, the placeholder step, then nginx (which needs a pair)."""
        docker("network", "create", self.network)
        gateway = docker(
            "network", "inspect", "--format={{(index .IPAM.Config 0).Gateway}}", self.network
        ).stdout.strip()
        for volume in (self.certs, self.webroot):
            docker("volume", "create", volume)
            self._volumes.add(volume)
        self.pebble = Pebble(self.workdir, gateway, self.http_port)
        self.pebble.start()
        placeholder = self.registered().child_of("owner", "acme-placeholder", COMMAND)
        result = run_step(placeholder.inputs)
        assert result.returncode == 0, result.stdout + result.stderr
        self.start_nginx()

    def settings(self, **acme: Any) -> StackSettings:
        pebble = self.pebble_started()
        return StackSettings.model_validate(
            {
                "publicHost": DOMAINS[0],
                "tls": {
                    "mode": "acme",
                    "domains": list(DOMAINS),
                    "acme": {
                        "email": EMAIL,
                        "directoryUrl": pebble.directory_url,
                        "directoryCa": pebble.ca_pem,
                        "retryMinS": 5,
                        "retryMaxS": 60,
                        **acme,
                    },
                },
            }
        )

    def registered(self, **acme: Any) -> Graph:
        """What the program registers for the client with these `tls.acme` settings."""
        volumes = VolumeNames(*(f"unused-{n}" for n in ("pg", "bk", "logs", "up", "assets")))
        stack = StackContext(
            self.name, NetworkNames(self.network, "unused"), volumes, LoggingSettings()
        )
        settings = self.settings(**acme)

        def make() -> None:
            owner = pulumi.ComponentResource("astats:test:Owner", "owner")
            spec = acme_spec(
                stack,
                settings,
                image=self.image,
                certs_volume=self.certs,
                webroot_volume=self.webroot,
                served_address=f"{self.nginx}:{HTTPS_PORT}",
            )
            placeholder_step(owner, stack, image=self.image, certs_volume=self.certs, after=())
            service_container(owner, stack, spec)

        return register(make, stack=self.name)

    def start_nginx(self) -> None:
        """nginx as the stack runs it (unprivileged, read-only, its scratch tmpfs), started by
        nginx-run.sh with its watcher on the certificate."""
        conf = self.workdir / "nginx.conf"
        conf.write_text(nginx_conf(self.https_port))
        conf.chmod(0o644)
        docker(
            "run",
            "--detach",
            f"--name={self.nginx}",
            f"--network={self.network}",
            *hardened(NGINX_USER, nginx_scratch(NginxSettings())),
            f"--env=NGINX_COMMAND={NGINX_COMMAND}",
            f"--env=WATCH_INTERVAL_S={WATCH_INTERVAL_S}",
            f"--publish=127.0.0.1:{self.http_port}:{LISTEN_PORT}",
            f"--publish=127.0.0.1:{self.https_port}:{HTTPS_PORT}",
            f"--volume={conf}:{CONFIG_PATH}:ro",
            f"--volume={self.certs}:{NGINX_TLS_DIR}:ro",
            f"--volume={self.webroot}:{WEBROOT_DIR}:ro",
            "--entrypoint=/bin/sh",
            self.nginx_image,
            "-c",
            RUN_SCRIPT,
            "nginx-run",
            WATCHED,
        )

        def serving() -> bool:
            try:
                served_certificate(self.https_port, DOMAINS[0])
            except OSError:
                return False
            return True

        wait_until("nginx serving HTTPS", serving, timeout_s=30)

    def stop_nginx(self) -> None:
        docker("stop", self.nginx)

    def start_acme(self, **acme: Any) -> str:
        """Start the client as the program registers it (its files step, its container, its
        PIDs limit), with these `tls.acme` settings; the previous one is removed first."""
        self.stop_acme()
        graph = self.registered(**acme)
        container = graph.named("acme", "docker:index/container:Container")
        files = run_step(graph.files_step(container).inputs)
        assert files.returncode == 0, files.stderr
        self._volumes.update(
            v["volumeName"] for v in container.inputs["volumes"] if "files" in v["volumeName"]
        )
        self.acme = f"astats-{self.name}-acme-{uuid.uuid4().hex[:4]}"
        docker(
            "create",
            f"--name={self.acme}",
            *create_flags(container.inputs),
            container.inputs["image"],
            *create_args(container.inputs),
        )
        docker("start", self.acme)
        limit = graph.child_of("owner", "acme-pids-limit", COMMAND)
        result = run_step(limit.inputs, {"CONTAINER": self.acme})
        assert result.returncode == 0, result.stderr
        return self.acme

    def stop_acme(self) -> None:
        if self.acme is not None:
            docker("rm", "--force", self.acme, check=False)
            self.acme = None

    def acme_exec(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        assert self.acme is not None
        envs = [f"--env={k}={v}" for k, v in (env or {}).items()]
        return docker("exec", *envs, self.acme, PROGRAM, *args, check=False)

    def nginx_logs(self) -> str:
        result = docker("logs", self.nginx, check=False)
        return result.stdout + result.stderr

    def in_acme(self, script: str) -> str:
        """A shell line in the running client, as its user."""
        assert self.acme is not None
        result = docker("exec", self.acme, "/bin/sh", "-c", script, check=False)
        return result.stdout + result.stderr

    def inspect_acme(self) -> dict[str, Any]:
        assert self.acme is not None
        inspected: list[dict[str, Any]] = json.loads(docker("inspect", self.acme).stdout)
        return inspected[0]

    def status(self) -> dict[str, Any]:
        result = self.acme_exec("status")
        assert result.returncode == 0, result.stderr
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def status_file(self) -> dict[str, Any]:
        """status.json as the loop last wrote it."""
        status: dict[str, Any] = json.loads(self.in_acme(f"cat {CERTS_DIR}/status.json"))
        return status

    def current_release(self) -> str:
        """Where `current` points."""
        return self.in_acme(f"readlink {CERTS_DIR}/current").strip()

    def logs(self) -> list[str]:
        assert self.acme is not None
        result = docker("logs", self.acme, check=False)
        return (result.stdout + result.stderr).splitlines()

    def wait_for_log(self, text: str, count: int = 1, timeout_s: float = 90) -> None:
        wait_until(
            f"{count} log line(s) with {text!r} from the client",
            lambda: sum(text in line for line in self.logs()) >= count,
            timeout_s,
        )

    def health_status(self) -> str:
        assert self.acme is not None
        state = json.loads(docker("inspect", "--format={{json .State}}", self.acme).stdout)
        return str(state.get("Health", {}).get("Status"))

    def down(self) -> None:
        self.stop_acme()
        docker("rm", "--force", self.nginx, check=False)
        if self.pebble is not None:
            self.pebble.stop()
        for volume in self._volumes:
            docker("volume", "rm", "--force", volume, check=False)
        docker("network", "rm", self.network, check=False)

    def diagnostics(self) -> str:
        nginx = docker("logs", "--tail=20", self.nginx, check=False)
        acme = "\n".join(self.logs()[-20:]) if self.acme else ""
        pebble = self.pebble.logs()[-3000:] if self.pebble else ""
        return f"acme:\n{acme}\nnginx:\n{nginx.stdout}{nginx.stderr}\npebble:\n{pebble}"


@contextmanager
def acme_rig(image: str, nginx_image: str, workdir: Path) -> Iterator[AcmeRig]:
    rig = AcmeRig(image, nginx_image, workdir)
    try:
        rig.up()
        yield rig
    except BaseException:
        print(rig.diagnostics())
        raise
    finally:
        rig.down()

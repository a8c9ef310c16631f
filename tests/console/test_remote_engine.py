"""``astats`` wherever ``docker`` works: ``DOCKER_HOST=ssh://...`` through a private sshd on a
loopback port, whose remote ``docker system dial-stdio`` reaches this machine's engine.

The ssh client takes ``~`` from the password database, not from ``$HOME``: an ``ssh`` first on
PATH runs the real one with ``-F`` the test's ``~/.ssh/config``, as an operator's own would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from docker.client import DockerClient

from tests.console.conftest import Images
from tests.console.helpers import ASTATS, WAIT_S, astats
from tests.console.ministack import MiniStack, health
from tests.support.ci import unavailable
from tests.support.terminal import Terminal

ALIAS = "astats-remote"  # a Host in the ssh config; its Port is there, not in DOCKER_HOST
LOCAL_ENGINE = "unix:///var/run/docker.sock"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Remote:
    port: int
    home: Path
    bin: Path

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def env(self, docker_host: str) -> dict[str, str]:
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        return {
            **os.environ,
            "HOME": str(self.home),
            "PATH": path,
            "DOCKER_HOST": docker_host,
            "COLUMNS": "250",
        }

    def astats(
        self, docker_host: str, stack: str, *args: str, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return astats(stack, *args, stdin=stdin, env=self.env(docker_host), timeout=120)


def _program(name: str, fallback: str, package: str) -> str:
    found = shutil.which(name) or (fallback if os.access(fallback, os.X_OK) else None)
    if found is None:
        unavailable(f"{name} is needed for DOCKER_HOST=ssh:// (apt-get install {package})")
    return found


def _printed_by_astats(stderr: str) -> list[str]:
    """stderr without what the remote account's shell start-up prints on each ssh session: this
    machine's ~/.bashrc runs `pyenv init`, whose rehash complains when sessions start together."""
    return [line for line in stderr.splitlines() if not line.startswith("pyenv: ")]


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    path.write_text(text)
    path.chmod(mode)


def _sshd_config(root: Path, port: int) -> Path:
    # sshd starts its sessions with a clean environment: name the engine the remote docker uses.
    engine = os.environ.get("DOCKER_HOST", "")
    engine = engine if engine and not engine.startswith("ssh://") else LOCAL_ENGINE
    config = root / "sshd_config"
    _write(
        config,
        f"ListenAddress 127.0.0.1:{port}\n"
        f"HostKey {root / 'host_key'}\n"
        "PidFile none\n"
        "UsePAM no\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        # The key files sit under /tmp, which every user may write to.
        "StrictModes no\n"
        "X11Forwarding no\n"
        "PrintMotd no\n"
        f"SetEnv DOCKER_HOST={engine}\n"
        "LogLevel VERBOSE\n",
    )
    return config


def _keys(root: Path, home: Path, keygen: str) -> None:
    """The server's host key, and the operator's key that root's authorized_keys lists."""
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    for path in (root / "host_key", ssh_dir / "id_ed25519"):
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
            check=True,
        )
    _write(root / "authorized_keys", (ssh_dir / "id_ed25519.pub").read_text())


def _client_config(root: Path, home: Path, port: int) -> Path:
    """~/.ssh/config: the alias with its port, the key, and the server's key already known."""
    ssh_dir = home / ".ssh"
    key_type, key = (root / "host_key.pub").read_text().split()[:2]
    _write(ssh_dir / "known_hosts", f"[127.0.0.1]:{port} {key_type} {key}\n")
    config = ssh_dir / "config"
    _write(
        config,
        f"Host {ALIAS}\n"
        "  HostName 127.0.0.1\n"
        f"  Port {port}\n"
        "  User root\n"
        "Host *\n"
        f"  IdentityFile {ssh_dir / 'id_ed25519'}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {ssh_dir / 'known_hosts'}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 10\n",
    )
    return config


@pytest.fixture(scope="module")
def remote(engine: DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """A private sshd on a free loopback port, logging root in with a key made here."""
    if os.geteuid() != 0:
        unavailable("the private sshd runs as root, to log in as root")
    sshd = _program("sshd", "/usr/sbin/sshd", "openssh-server")
    ssh = _program("ssh", "/usr/bin/ssh", "openssh-client")
    keygen = _program("ssh-keygen", "/usr/bin/ssh-keygen", "openssh-client")
    if shutil.which("docker") is None:
        unavailable("the docker CLI is needed on PATH (apt-get install docker.io)")
    root = tmp_path_factory.mktemp("sshd")
    home = root / "home"
    _keys(root, home, keygen)
    port = free_port()
    bin_dir = root / "bin"
    bin_dir.mkdir()
    _write(
        bin_dir / "ssh",
        f'#!/bin/sh\nexec {ssh} -F {_client_config(root, home, port)} "$@"\n',
        0o755,
    )
    # Where sshd drops privileges; the package makes it when its service starts.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = root / "sshd.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(_sshd_config(root, port))],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        probe = [str(bin_dir / "ssh"), ALIAS, "docker version --format '{{.Server.Version}}'"]
        deadline = time.monotonic() + 20
        while True:
            result = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
            if result.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the remote docker never answered over ssh: {result.stderr.strip()}; "
                    f"sshd said: {log.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield Remote(port, home, bin_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _same(status: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What does not change between two runs a second apart."""
    return sorted(
        (s["service"], s["container"], s["id"], s["state"], s["health"], s["restarts"], s["image"])
        for s in status["services"]
    )


def _stack(ministack: MiniStack, images: Images) -> None:
    data = ministack.volume("data", "db")
    db = ministack.create(
        "db",
        images.python,
        ["sh", "-c", "for n in 1 2 3 4 5 6 7 8; do echo db line $n; done; sleep 600"],
        healthcheck=health(["CMD", "true"]),
        volumes={data: "/data"},
    )
    ministack.create("backend", images.python, ["sleep", "600"])
    ministack.wait_for(db, "healthy")
    ministack.wait_for_log(db, "db line 8")


def test_status_over_ssh_shows_what_the_local_socket_shows(
    ministack: MiniStack, console_images: Images, remote: Remote
) -> None:
    _stack(ministack, console_images)
    local = astats(ministack.name, "status", "--json")
    assert local.returncode == 0, local.stderr
    here = json.loads(local.stdout)
    assert [s["service"] for s in here["services"]] == ["backend", "db"]
    # The port in the URL, or only in ~/.ssh/config as the docker CLI allows (the SDK alone
    # would put -p 22 on the ssh command line). The disk is read with df through an exec, whose
    # connection the SDK alone fails to close over ssh (docker-py #3218).
    for docker_host in (remote.url, f"ssh://{ALIAS}"):
        over_ssh = remote.astats(docker_host, ministack.name, "status", "--json")
        assert over_ssh.returncode == 0, f"{docker_host}: {over_ssh.stderr}"
        assert _printed_by_astats(over_ssh.stderr) == [], docker_host
        there = json.loads(over_ssh.stdout)
        assert _same(there) == _same(here), docker_host
        assert [v["name"] for v in there["volumes"]] == [v["name"] for v in here["volumes"]]
        # Read with df in a container over ssh, with statvfs here: the same file system.
        assert there["disk"]["path"] == here["disk"]["path"]
        assert there["disk"]["total"] == here["disk"]["total"]


def test_logs_over_ssh(ministack: MiniStack, console_images: Images, remote: Remote) -> None:
    _stack(ministack, console_images)
    for docker_host in (remote.url, f"ssh://{ALIAS}"):
        result = remote.astats(docker_host, ministack.name, "logs", "db", "--tail", "5")
        assert result.returncode == 0, f"{docker_host}: {result.stderr}"
        lines = [line for line in result.stdout.splitlines() if "db line" in line]
        assert [line.rsplit(" ", 1)[1] for line in lines] == ["4", "5", "6", "7", "8"]


def test_psql_and_shell_over_ssh_go_through_the_docker_cli(
    ministack: MiniStack, console_images: Images, remote: Remote
) -> None:
    db = ministack.database(console_images.postgres)
    ministack.wait_for(db, "healthy")
    psql = remote.astats(f"ssh://{ALIAS}", ministack.name, "psql", "-At", "-c", "select 40 + 2")
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.split() == ["42"]
    shell = remote.astats(
        remote.url, ministack.name, "shell", "db", stdin="echo shell says $((40 + 2))\n"
    )
    assert shell.returncode == 0, shell.stderr
    assert "shell says 42" in shell.stdout


def test_interactive_psql_and_shell_over_ssh_get_a_terminal(
    ministack: MiniStack, console_images: Images, remote: Remote
) -> None:
    """On a TTY, as an operator types: ``docker exec -it`` over ssh, a prompt, an answer, and
    the session's own exit code back."""
    db = ministack.database(console_images.postgres)
    ministack.wait_for(db, "healthy")
    env = {**remote.env(f"ssh://{ALIAS}"), "TERM": "dumb", "PAGER": "cat"}
    # psql's own arguments pass through; the pager runs in the container.
    psql_argv = [ASTATS, "--stack", ministack.name, "psql", "-P", "pager=off"]
    psql = Terminal(psql_argv, env, wait_s=WAIT_S)
    try:
        psql.expect("=#")
        psql.type("select 40 + 2 as answer;\n")
        # The answer's footer: readline may redraw the prompt (and its "=#") as the line is typed.
        assert "42" in psql.expect("(1 row)")
        psql.expect("=#")
        psql.type("\\q\n")
        assert psql.wait() == 0
    finally:
        psql.close()
    shell = Terminal([ASTATS, "--stack", ministack.name, "shell", "db"], env, wait_s=WAIT_S)
    try:
        shell.expect("# ")
        shell.type("tty; echo shell says $((40 + 2)); exit 3\n")
        shell.expect("shell says 42")
        assert shell.wait() == 3
    finally:
        shell.close()
    assert "/dev/pts/" in shell.output, shell.output
    assert "not a tty" not in shell.output


def test_an_unreachable_ssh_host_is_one_line_naming_docker_host(remote: Remote) -> None:
    """ssh's own reason, not the SDK's broken pipe, and not ssh's line ahead of astats' own."""
    closed = f"ssh://root@127.0.0.1:{free_port()}"
    result = remote.astats(closed, "any", "status")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"astats status: error: no Docker engine answers at {closed}: "
        f"ssh: connect to host 127.0.0.1 port {closed.rsplit(':', 1)[1]}: Connection refused; "
        "start it or point DOCKER_HOST at it"
    ]


def test_without_an_ssh_client_the_line_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "DOCKER_HOST": "ssh://root@127.0.0.1"}
    result = astats("any", "status", env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "astats status: error: DOCKER_HOST is ssh://root@127.0.0.1, which needs the ssh client "
        "on PATH (apt-get install openssh-client)"
    ]

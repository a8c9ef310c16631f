"""The Docker engine: one connection per run, and commands run inside containers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from docker.client import DockerClient, from_env
from docker.errors import DockerException
from docker.models.containers import Container

from astats_console.errors import ConsoleError, one_line

HEALTH_OUTPUT_CHARS = 300


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def error_text(self) -> str:
        return one_line(self.stderr or self.stdout) or f"exit code {self.exit_code}"


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "the local socket"


def is_local_engine() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    return not host or host.startswith("unix://")


def _no_engine(why: str) -> ConsoleError:
    return ConsoleError(
        f"no Docker engine answers at {engine_address()}: {why}; "
        "start it or point DOCKER_HOST at it"
    )


def connect() -> DockerClient:
    """The engine `docker` itself would use; ``ssh://`` hosts go through the ssh client."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("ssh://"):
        return _connect_over_ssh(host)
    try:
        client = from_env()
        client.ping()
    except DockerException as exc:
        raise _no_engine(one_line(str(exc))) from exc
    return client


def ssh_url(host: str, ssh: str) -> str:
    """``host`` with the port the ssh client would use. Without a port in the URL the SDK puts
    ``-p 22`` on the ssh command line, over a Port in ~/.ssh/config; the docker CLI leaves the
    port to ssh, so ask ssh (``ssh -G`` reads its configuration and connects nowhere)."""
    rest = host[len("ssh://") :]
    user, _, name = rest.rpartition("@")
    if not name or "/" in rest or ":" in name:
        return host  # a port given, or a URL the SDK refuses with its own words
    argv = [ssh, "-G", *(["-l", user] if user else []), "--", name]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _no_engine(f"ssh -G {name} failed: {one_line(str(exc))}") from exc
    ports = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("port ")]
    if result.returncode != 0 or not ports:
        said = one_line(result.stderr) or f"exit code {result.returncode}"
        raise _no_engine(f"ssh cannot read its configuration for {name}: {said}")
    return f"{host}:{ports[0]}"


@contextlib.contextmanager
def _stderr_into(file: IO[bytes]) -> Iterator[None]:
    """The ssh client writes its errors straight to file descriptor 2: keep them for the one
    line instead of letting them run ahead of it."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tolerate_exited_ssh() -> None:
    """docker-py #3218: when an exec ends, the engine closes its connection and the ssh that
    carried it exits; the SDK's close then writes to that ssh and raises BrokenPipeError, after
    the output has been read in full. Nothing is left to close by then."""
    from docker.transport.sshconn import SSHSocket

    close = SSHSocket.close
    if getattr(close, "tolerates_exited_ssh", False):
        return

    def close_quietly(self: SSHSocket) -> None:
        with contextlib.suppress(BrokenPipeError):
            close(self)

    close_quietly.tolerates_exited_ssh = True  # type: ignore[attr-defined]
    SSHSocket.close = close_quietly


def _connect_over_ssh(host: str) -> DockerClient:
    ssh = shutil.which("ssh")
    if ssh is None:
        raise ConsoleError(
            f"DOCKER_HOST is {host}, which needs the ssh client on PATH "
            "(apt-get install openssh-client)"
        )
    url = ssh_url(host, ssh)
    _tolerate_exited_ssh()
    with tempfile.TemporaryFile() as said:
        try:
            with _stderr_into(said):
                # The ssh binary honours ~/.ssh/config and agents the way the docker CLI does.
                client = from_env(
                    environment={**os.environ, "DOCKER_HOST": url}, use_ssh_client=True
                )
                client.ping()
        except DockerException as exc:
            said.seek(0)
            lines = said.read().decode("utf-8", "replace").strip().splitlines()
            # ssh's last line is the reason (a refused connection, a key, no docker there).
            raise _no_engine(one_line(lines[-1]) if lines else one_line(str(exc))) from exc
    return client


def run_in(container: Container, argv: list[str]) -> ExecResult:
    """Run ``argv`` in a running container as its own user; stdin is closed."""
    api = container.client.api
    exec_id = api.exec_create(container.id, argv)["Id"]
    stdout, stderr = api.exec_start(exec_id, demux=True)
    code = api.exec_inspect(exec_id)["ExitCode"]
    return ExecResult(
        exit_code=int(code if code is not None else -1),
        stdout=(stdout or b"").decode("utf-8", "replace"),
        stderr=(stderr or b"").decode("utf-8", "replace"),
    )


def last_failing_check(state: dict[str, Any]) -> str | None:
    """The output of the last failing healthcheck in a container's inspected ``State``."""
    for entry in reversed((state.get("Health") or {}).get("Log") or []):
        if entry.get("ExitCode") != 0:
            text = " ".join(str(entry.get("Output", "")).split())
            return text[:HEALTH_OUTPUT_CHARS] or f"exit code {entry.get('ExitCode')}"
    return None

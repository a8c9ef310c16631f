"""The Docker engine: one connection per run, and commands run inside containers."""

from __future__ import annotations

import os
from dataclasses import dataclass

from docker.client import DockerClient, from_env
from docker.errors import DockerException
from docker.models.containers import Container

from astats_console.errors import ConsoleError, one_line


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


def connect() -> DockerClient:
    """The engine `docker` itself would use; ``ssh://`` hosts go through the ssh client."""
    host = os.environ.get("DOCKER_HOST", "")
    try:
        # The ssh binary honours ~/.ssh/config and agents the way the docker CLI does.
        client = from_env(use_ssh_client=host.startswith("ssh://"))
        client.ping()
    except DockerException as exc:
        raise ConsoleError(
            f"no Docker engine answers at {engine_address()}: {one_line(str(exc))}; "
            "start it or point DOCKER_HOST at it"
        ) from exc
    return client


def run_in(
    container: Container,
    argv: list[str],
    *,
    environment: dict[str, str] | None = None,
) -> ExecResult:
    """Run ``argv`` in a running container as its own user; stdin is closed."""
    api = container.client.api
    exec_id = api.exec_create(container.id, argv, environment=environment)["Id"]
    stdout, stderr = api.exec_start(exec_id, demux=True)
    code = api.exec_inspect(exec_id)["ExitCode"]
    return ExecResult(
        exit_code=int(code if code is not None else -1),
        stdout=(stdout or b"").decode("utf-8", "replace"),
        stderr=(stderr or b"").decode("utf-8", "replace"),
    )

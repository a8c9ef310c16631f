"""Which stack, and its containers: found by the ``astats.stack``/``astats.service`` labels."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from docker.client import DockerClient
from docker.models.containers import Container

from astats_console.errors import ConsoleError

STACK_LABEL = "astats.stack"
SERVICE_LABEL = "astats.service"
FALLBACK_STACK = "dev"
LOGS_PSEUDO_SERVICE = "latest-log"


def _project_state_dir(start: Path) -> Path | None:
    """``.pulumi-state`` beside the nearest Pulumi.yaml: where scripts/up keeps the state."""
    for directory in (start, *start.parents):
        if (directory / "Pulumi.yaml").is_file():
            state = directory / ".pulumi-state"
            return state if state.is_dir() else None
    return None


def default_stack_name(cwd: Path | None = None) -> str:
    """The selected Pulumi stack when the CLI can say, else ``dev``."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        return FALLBACK_STACK
    env = dict(os.environ)
    state = _project_state_dir(cwd or Path.cwd())
    if "PULUMI_BACKEND_URL" not in env and state is not None:
        env["PULUMI_BACKEND_URL"] = f"file://{state}"
    try:
        result = subprocess.run(
            [pulumi, "stack", "--show-name", "--non-interactive"],
            capture_output=True,
            text=True,
            timeout=20,
            env=env,
            cwd=cwd,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return FALLBACK_STACK
    name = result.stdout.strip()
    if result.returncode != 0 or not name or len(name.split()) != 1:
        return FALLBACK_STACK
    return name


def service_of(container: Container) -> str:
    return str(container.labels.get(SERVICE_LABEL, "?"))


def created_key(container: Container) -> str:
    return str(container.attrs.get("Created", ""))


@dataclass
class Stack:
    client: DockerClient
    name: str

    def containers(self, service: str | None = None, *, running: bool = False) -> list[Container]:
        """Oldest first, so the newest of a service (a rollout's replacement) comes last."""
        labels = [f"{STACK_LABEL}={self.name}"]
        if service is not None:
            labels.append(f"{SERVICE_LABEL}={service}")
        found = self.client.containers.list(all=not running, filters={"label": labels})
        return sorted(found, key=created_key)

    def stacks_here(self) -> list[str]:
        found = self.client.containers.list(all=True, filters={"label": STACK_LABEL})
        return sorted({str(c.labels[STACK_LABEL]) for c in found})

    def require(self) -> list[Container]:
        """Every container of the stack; a stack with none is a typo or a stack not up here."""
        containers = self.containers()
        if not containers:
            others = ", ".join(self.stacks_here()) or "none"
            raise ConsoleError(
                f"no stack {self.name!r} on this engine (stacks here: {others}); "
                "pick one with --stack"
            )
        return containers

    def services(self) -> list[str]:
        return sorted({service_of(c) for c in self.require()})

    def check_services(self, wanted: list[str], *, extra: tuple[str, ...] = ()) -> None:
        known = self.services()
        for service in wanted:
            if service not in known and service not in extra:
                choices = ", ".join([*known, *extra])
                raise ConsoleError(
                    f"no service {service!r} in stack {self.name!r} (services: {choices})"
                )

    def running(self, service: str, *, role: str | None = None) -> Container:
        """The newest running container of ``service``; a clear error when there is none."""
        self.check_services([service])
        running = self.containers(service, running=True)
        if running:
            return running[-1]
        stopped = self.containers(service)
        state = stopped[-1].status if stopped else "missing"
        what = role or f"the {service} container"
        raise ConsoleError(
            f"{what} of stack {self.name!r} is not running ({state}); "
            f"start it (docker start {stopped[-1].name}) or run pulumi up"
            if stopped
            else f"{what} of stack {self.name!r} is not running; run pulumi up"
        )

"""One throwaway stack for the whole end-to-end run: a copy of this project with its own file
backend, passphrase, stack name, port and volumes, deployed by the real `pulumi up` on the
local Docker engine, and removed afterwards, on failure too."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import preflight
from tests.e2e.engine import Project, Step, labelled, read_events, steps
from tests.e2e.images import STAND_IN_FOR, StandIns, stand_in_dockerfile, stand_ins


def pytest_configure(config: pytest.Config) -> None:
    missing = preflight.problem()
    if missing:
        pytest.exit(f"scripts/e2e: {missing}", returncode=1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def remove_stack_leftovers(stack: str) -> None:
    """Whatever Docker still holds of `stack` (by label; retained volumes included)."""
    for kind, listing in (
        ("container", ["ps", "-aq"]),
        ("volume", ["volume", "ls", "-q"]),
        ("network", ["network", "ls", "-q"]),
    ):
        found = labelled(stack, listing)
        if found:
            force = ["-f"] if kind != "network" else []
            subprocess.run(["docker", kind, "rm", *force, *found], capture_output=True)
    images = subprocess.run(
        ["docker", "images", "-q", "--filter", f"reference=astats-{stack}-*"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if images:
        subprocess.run(["docker", "rmi", "-f", *sorted(set(images))], capture_output=True)


def write_stack_config(project: Project, images: StandIns, port: int) -> None:
    """The dev stack's settings, on the stand-in images and a free loopback port."""
    config = yaml.safe_load((project.root / "Pulumi.dev.yaml").read_text())["config"]
    config["astats:database"]["image"] = images.postgres
    config["astats:nginx"]["image"] = images.nginx
    config["astats:nginx"]["httpPort"] = port
    config["astats:nginx"]["bindAddress"] = "127.0.0.1"
    stand_in = {"backend": images.python, "frontend": images.node}
    for service, official in STAND_IN_FOR.items():
        context = project.root / config[f"astats:{service}"]["build"]["context"]
        stand_in_dockerfile(context / "Dockerfile", official, stand_in[service])
        config[f"astats:{service}"]["build"]["dockerfile"] = "Dockerfile.e2e"
    path = project.root / f"Pulumi.{project.stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=True))


@contextlib.contextmanager
def stack_of_its_own(
    images: StandIns, prefix: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> Iterator[tuple[Project, int]]:
    """A stack for one test module: the dev settings on the stand-ins and a free port, `edit`
    applied to its `config:` block, its secrets set, not yet up; removed afterwards with all it
    left on the engine (volumes and images by label and name)."""
    stack = f"{prefix}-{secrets.token_hex(3)}"
    scratch = Path(tempfile.mkdtemp(prefix=f"astats-{prefix}-"))
    project = Project.create(scratch, stack)
    port = free_port()
    try:
        project.init()
        write_stack_config(project, images, port)
        if edit is not None:
            path = project.root / f"Pulumi.{stack}.yaml"
            config = yaml.safe_load(path.read_text())
            edit(config["config"])
            path.write_text(yaml.safe_dump(config, sort_keys=True))
        project.set_config("astats:dbPassword", secrets.token_urlsafe(24), secret=True)
        project.set_config("astats:secretKey", secrets.token_urlsafe(32), secret=True)
        yield project, port
    finally:
        project.destroy(check=False)
        project.remove_stack()
        remove_stack_leftovers(stack)
        shutil.rmtree(scratch, ignore_errors=True)


ARCHIVE_TIMEOUT_S = 10


def archiving_quickly(config: dict[str, Any]) -> None:
    """WAL archived at least every 10 s when idle; no dump drills (their time is not tested
    here)."""
    backup = config.setdefault("astats:backup", {})
    backup["drills"] = False
    backup["pitr"] = {"archiveTimeoutS": ARCHIVE_TIMEOUT_S}


@dataclass
class Deployment:
    project: Project
    url: str
    port: int
    scratch: Path
    first_up: dict[str, Step]
    first_up_seconds: float

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/dev-cockpit"

    @property
    def event_log(self) -> Path:
        return self.scratch / f"events-{secrets.token_hex(4)}.jsonl"

    @property
    def backend_context(self) -> Path:
        return self.project.root / "examples" / "demo-app" / "backend"


@pytest.fixture(scope="session")
def images() -> StandIns:
    return stand_ins()


@pytest.fixture(scope="session")
def deployment(images: StandIns) -> Iterator[Deployment]:
    import time

    stack = f"e2e-{secrets.token_hex(4)}"
    scratch = Path(tempfile.mkdtemp(prefix="astats-e2e-"))
    project = Project.create(scratch, stack)
    try:
        project.init()
        port = free_port()
        write_stack_config(project, images, port)
        project.set_config("astats:dbPassword", secrets.token_urlsafe(24), secret=True)
        project.set_config("astats:secretKey", secrets.token_urlsafe(32), secret=True)
        log = scratch / "events-cold-up.jsonl"
        started = time.monotonic()
        project.up(event_log=log)
        elapsed = time.monotonic() - started
        yield Deployment(
            project=project,
            url=f"http://127.0.0.1:{port}",
            port=port,
            scratch=scratch,
            first_up=steps(read_events(log)),
            first_up_seconds=elapsed,
        )
    finally:
        project.destroy(check=False)
        project.remove_stack()
        remove_stack_leftovers(stack)
        shutil.rmtree(scratch, ignore_errors=True)

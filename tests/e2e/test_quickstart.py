"""The README's quick start, for real: `scripts/up`, the URL answers, `astats status` finds
nothing that needs attention, `scripts/down`.

It runs in a copy of the project with its own `.pulumi-state/` (so its own file backend and
passphrase), on a per-machine stack of its own (`dev-qs<random>`, which takes the dev settings
as `dev` does) and a free loopback port, so nothing of a dev stack on this host is touched. The
copy's dev settings name the local stand-in images, as the rest of the suite's stacks do.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import free_port, remove_stack_leftovers
from tests.e2e.engine import copy_tree, labelled
from tests.e2e.images import STAND_IN_FOR, StandIns, stand_in_dockerfile


@dataclass
class QuickStart:
    root: Path
    stack: str
    port: int
    env: dict[str, str]

    def run(self, *argv: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def use_stand_ins(root: Path, images: StandIns, port: int) -> None:
    """The copy's shared dev settings, on the stand-in images and a free loopback port."""
    path = root / "Pulumi.dev.yaml"
    settings = yaml.safe_load(path.read_text())
    config = settings["config"]
    config["astats:database"]["image"] = images.postgres
    config["astats:nginx"]["image"] = images.nginx
    config["astats:nginx"]["httpPort"] = port
    stand_in = {"backend": images.python, "frontend": images.node}
    for service, official in STAND_IN_FOR.items():
        context = root / config[f"astats:{service}"]["build"]["context"]
        stand_in_dockerfile(context / "Dockerfile", official, stand_in[service])
        config[f"astats:{service}"]["build"]["dockerfile"] = "Dockerfile.e2e"
    path.write_text(yaml.safe_dump(settings, sort_keys=True))


@pytest.fixture
def quick_start(images: StandIns) -> Iterator[QuickStart]:
    stack = f"dev-qs{secrets.token_hex(3)}"
    scratch = Path(tempfile.mkdtemp(prefix="astats-e2e-qs-"))
    root = scratch / "project"
    root.mkdir()
    copy_tree(root)
    port = free_port()
    use_stand_ins(root, images, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "ASTATS_"))}
    env |= {
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        "NO_COLOR": "1",
    }
    try:
        yield QuickStart(root=root, stack=stack, port=port, env=env)
    finally:
        subprocess.run(
            ["scripts/down", stack, "--yes", "--skip-preview"],
            cwd=root,
            env=env,
            capture_output=True,
            timeout=900,
            check=False,
        )
        remove_stack_leftovers(stack)
        shutil.rmtree(scratch, ignore_errors=True)


def status_until_nothing_needs_attention(qs: QuickStart) -> subprocess.CompletedProcess[str]:
    """`astats status`, again for a minute while a container is still starting."""
    deadline = time.monotonic() + 60
    while True:
        status = qs.run("venv/bin/astats", "--stack", qs.stack, "status", timeout=120)
        if status.returncode == 0 or time.monotonic() > deadline:
            return status
        time.sleep(5)


def test_the_readme_quick_start_works_as_written(quick_start: QuickStart) -> None:
    qs = quick_start
    up = qs.run("scripts/up", qs.stack, "--yes")
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    passphrase = qs.root / ".pulumi-state" / f"passphrase-{qs.stack}"
    assert passphrase.stat().st_mode & 0o077 == 0
    # The secrets scripts/up generated stay on this machine, out of the shared settings.
    shared = yaml.safe_load((qs.root / "Pulumi.dev.yaml").read_text())
    assert "encryptionsalt" not in shared
    assert "astats:dbPassword" not in shared["config"]

    url = qs.run("scripts/pulumi", "stack", "output", "url", "--stack", qs.stack, timeout=120)
    assert url.returncode == 0, url.stderr
    assert url.stdout.strip().endswith(f":{qs.port}")
    # The URL the README says to open: nginx on 127.0.0.1 at the stack's port.
    with httpx.Client(base_url=f"http://127.0.0.1:{qs.port}", timeout=10) as client:
        assert client.get("/").status_code == 200
        assert client.get("/health").json()["status"] == "ok"

    status = status_until_nothing_needs_attention(qs)
    assert status.returncode == 0, status.stdout + status.stderr
    for service in ("db", "backend", "frontend", "nginx", "backup"):
        assert service in status.stdout

    down = qs.run("scripts/down", qs.stack, "--yes", "--skip-preview", timeout=900)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert labelled(qs.stack) == []

"""The README's first command, `scripts/up`, brings the dev stack up as it is in Pulumi.dev.yaml,
and `scripts/down` takes it down again.

The dev stack names the official images. Where this host has none of one (no registry, say),
the stand-in is tagged with the official name for the run, and that tag only is removed
afterwards; an official image already present is used as it is and left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.docker.python_image import OFFICIAL_PYTHON
from tests.e2e.conftest import remove_stack_leftovers
from tests.e2e.engine import REPO, copy_tree, labelled
from tests.e2e.images import OFFICIAL_NODE, StandIns
from tests.e2e.traffic import echo


@pytest.fixture
def official_names(images: StandIns, tmp_path: Path) -> Iterator[None]:
    dev = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    wanted = {
        dev["astats:database"]["image"]: images.postgres,
        dev["astats:nginx"]["image"]: images.nginx,
        OFFICIAL_PYTHON: images.python,
        OFFICIAL_NODE: images.node,
    }
    created = []
    for official, stand_in in wanted.items():
        present = subprocess.run(["docker", "image", "inspect", official], capture_output=True)
        if present.returncode != 0:
            subprocess.run(["docker", "tag", stand_in, official], check=True)
            created.append(official)
    try:
        yield
    finally:
        for tag in created:
            subprocess.run(["docker", "rmi", "--no-prune", tag], capture_output=True)


def run_script(project: Path, env: dict[str, str], script: str) -> None:
    """`scripts/<script> dev`, as an operator runs it, without its prompt."""
    done = subprocess.run(
        [f"scripts/{script}", "dev", "--yes", "--skip-preview"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def test_scripts_up_brings_the_dev_stack_up_and_scripts_down_takes_it_down(
    official_names: None,
) -> None:
    existing = labelled("dev") + labelled("dev", ("volume", "ls", "-q"))
    assert existing == [], (
        "this host already has containers or volumes of a dev stack; the scripts/up check "
        "deploys and removes one, so run it where no dev stack lives"
    )
    scratch = Path(tempfile.mkdtemp(prefix="astats-e2e-up-"))
    project = scratch / "project"
    project.mkdir()
    copy_tree(project)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "ASTATS_"))}
    env |= {"PULUMI_SKIP_UPDATE_CHECK": "true", "NO_COLOR": "1"}
    dev = yaml.safe_load((project / "Pulumi.dev.yaml").read_text())["config"]
    port = dev["astats:nginx"]["httpPort"]
    try:
        run_script(project, env, "up")
        assert (project / ".pulumi-state" / "passphrase-dev").stat().st_mode & 0o077 == 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/health").json()["status"] == "ok"
            assert client.get("/").status_code == 200
        assert echo(f"ws://127.0.0.1:{port}/ws/dev-cockpit") == "ping"

        run_script(project, env, "down")
        assert labelled("dev") == []
    finally:
        remove_stack_leftovers("dev")
        shutil.rmtree(scratch, ignore_errors=True)

"""components/files/record-release.sh on a real engine: each run labels the images it is given
as a release, and only the newest `releases.keep` releases stay; an image a container still
runs is never removed."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from components.release_record import SCRIPT
from tests.support.docker import docker

KEEP = 2


@pytest.fixture
def stack(docker_engine: None) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        found = docker("images", "-q", "--filter", f"label=astats.stack={name}").stdout.split()
        docker(
            "rm",
            "-f",
            *docker("ps", "-aq", "--filter", f"label=astats.stack={name}").stdout.split(),
            check=False,
        )
        if found:
            docker("rmi", "-f", *sorted(set(found)), check=False)


def app_image(shell_image: str, stack: str, n: int) -> str:
    """A distinct image per release (a label of its own), as a build would give."""
    built = subprocess.run(
        [
            "docker",
            "build",
            "--quiet",
            "--label",
            f"astats.stack={stack}",
            "--label",
            f"astats.test.build={n}",
            "-",
        ],
        input=f"FROM {shell_image}\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return built.stdout.strip()


def record(stack: str, backend: str, frontend: str, backup: str) -> str:
    env = os.environ | {
        "BACKEND_IMAGE": backend,
        "BACKEND_REFERENCE": f"astats-{stack}-backend:latest",
        "FRONTEND_IMAGE": frontend,
        "FRONTEND_REFERENCE": f"astats-{stack}-frontend:latest",
        "BACKUP": backup,
        "DB_USER": "astats",
        "DB_NAME": "astats",
    }
    done = subprocess.run(
        ["/bin/sh", "-c", SCRIPT.read_text(), "record-release", stack, str(KEEP)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def release_tags(stack: str, service: str) -> list[str]:
    listed = docker(
        "images",
        "--filter",
        f"label=astats.release.service={service}",
        "--filter",
        f"label=astats.stack={stack}",
        "--format",
        "{{.Tag}}",
    ).stdout.split()
    return sorted(t for t in listed if t.startswith("release-"))


def test_each_run_records_a_labelled_release_and_keeps_the_newest(
    shell_image: str, stack: str
) -> None:
    names = []
    for n in range(4):
        backend, frontend = app_image(shell_image, stack, n), app_image(shell_image, stack, 100 + n)
        names.append(record(stack, backend, frontend, f"/backups/astats-2026120{n}T000000Z.dump"))
        if n == 0:
            # The first release's image runs in a container: it must survive the pruning.
            docker(
                "create",
                "--label",
                f"astats.stack={stack}",
                f"astats-{stack}-backend:release-{names[0]}",
                "sh",
            )
        time.sleep(1.1)  # release names are UTC seconds
    assert len(set(names)) == 4
    kept = release_tags(stack, "backend")
    assert kept == sorted([f"release-{names[0]}", f"release-{names[2]}", f"release-{names[3]}"])
    assert release_tags(stack, "frontend") == sorted(f"release-{n}" for n in names[2:])
    labels = json.loads(
        docker(
            "image",
            "inspect",
            "-f",
            "{{json .Config.Labels}}",
            f"astats-{stack}-backend:release-{names[3]}",
        ).stdout
    )
    assert labels["astats.release"] == names[3]
    assert labels["astats.release.backup"] == "/backups/astats-20261203T000000Z.dump"
    assert labels["astats.release.backend-image"].startswith("sha256:")
    assert labels["astats.release.alembic-head"] == ""  # no database container here

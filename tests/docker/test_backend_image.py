"""The migration job and the backend container as the program runs them, on a real Docker engine.

The backend image is the demo backend's real Dockerfile and context, built on a stand-in for the
official ``python:3.11-slim``, which cannot be pulled (no registry is reachable here): Debian
bookworm's own Python 3.11 on the debootstrapped bookworm base. How, and the one line that
differs, is in ``tests/docker/python_image.py``. The database is the postgres stand-in of
``tests/docker/test_backup_image.py``, started the same way: alias ``db`` on an internal network,
its password uploaded as a file.

What the program would hand to Docker is taken from the program's own functions: the job's
``docker run`` argv (``migration_job`` + ``docker_run_argv``), the ``DATABASE_URL`` it sends on
stdin (``DatabaseEndpoint.url``, resolved outside any deployment), and the backend container: the
program's ``Backend`` registers it on Pulumi's mocks, and ``tests/support/docker.py`` turns the
registered inputs into ``docker create`` flags (healthcheck included, as ``CMD-SHELL``).

Each test gets its own internal networks, database and volumes, all removed afterwards.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.backend import Backend, BackendInputs, uvicorn_command
from components.config import BackendSettings, BuildSettings, Healthcheck
from components.container import (
    STOP_GRACE_S,
    StackContext,
    wait_timeout_s,
)
from components.jobs import JobSpec, docker_run_argv
from components.migration import migration_job
from components.release import BackendRelease
from components.workers import uvicorn_workers
from tests.pulumi_harness import in_fresh_loop, register, value_of
from tests.support.docker import (
    apply_pids_limit,
    connect_networks,
    create_args,
    create_flags,
    docker,
    run_step,
)
from tests.support.docker_env import BackendImages, Env, endpoint, sql, start_database

# As Pulumi.dev.yaml configures it, with a healthcheck quick enough for a test.
BACKEND = BackendSettings(
    build=BuildSettings(context="examples/demo-app/backend"),
    memory_mb=768,
    cpus=1,
    healthcheck=Healthcheck(interval_s=1, timeout_s=5, retries=3, start_period_s=30),
)
REVISION = "0001_cockpit_notes"
TIMEOUT_S = 120


@dataclass
class Deployment:
    """One test's database, edge network and backend; `close` removes what it created."""

    env: Env
    images: BackendImages
    containers: list[str] = field(default_factory=list)
    database: str = ""
    volumes: list[str] = field(default_factory=list)

    @property
    def stack(self) -> StackContext:
        """What the program's migration and backend are given of this test's stack."""
        return self.env.stack_context()

    @property
    def edge(self) -> str:
        return self.env.docker_name("edge")

    def close(self) -> None:
        for container in reversed(self.containers):
            docker("rm", "--force", "--volumes", container, check=False)
        # The job runs with --rm; one killed mid-run (a timeout) could still be going.
        docker("rm", "--force", f"astats-{self.env.stack}-migration", check=False)
        for volume in self.volumes:
            docker("volume", "rm", "--force", volume, check=False)
        docker("network", "rm", self.edge, check=False)


@pytest.fixture
def deployment(
    env: Env,
    backend_images: BackendImages,
    tmp_path: Path,
) -> Iterator[Deployment]:
    deployed = Deployment(env, backend_images)
    docker("network", "create", "--internal", deployed.edge)
    try:
        deployed.database = start_database(env, tmp_path)
        yield deployed
    finally:
        deployed.close()


def url_for(password: str) -> str:
    """The DATABASE_URL the program sends the migration and writes into the backend's files."""

    async def make() -> str:
        return await value_of(endpoint(password).url())

    return in_fresh_loop(make)


def release(
    deployed: Deployment, password: str, settings: BackendSettings = BACKEND
) -> BackendRelease:
    """The demo backend as the stack hands it to its migration and then to the backend."""
    return BackendRelease(
        settings=settings, image=deployed.images.backend, database=endpoint(password)
    )


def run_migration(deployed: Deployment, password: str) -> subprocess.CompletedProcess[str]:
    """The migration exactly as the program runs it: its argv, DATABASE_URL on stdin."""

    async def job() -> tuple[JobSpec, str]:
        migrated = release(deployed, password)
        return migration_job(deployed.stack, migrated), await value_of(migrated.database.url())

    spec, url = in_fresh_loop(job)
    argv = docker_run_argv(spec, deployed.images.backend, deployed.env.network, [])
    # pulumi-command runs the joined command line through /bin/sh -c, as here.
    return subprocess.run(
        ["/bin/sh", "-c", shlex.join(argv)],
        input=url + "\n",
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def test_migration_job_creates_the_schema_and_a_second_run_is_a_no_op(
    deployment: Deployment,
) -> None:
    first = run_migration(deployment, deployment.env.password)

    assert first.returncode == 0, first.stderr
    assert f"Running upgrade  -> {REVISION}" in first.stderr
    db = deployment.database
    assert sql(db, "SELECT version_num FROM alembic_version") == REVISION
    assert sql(db, "SELECT to_regclass('public.cockpit_notes') IS NOT NULL") == "t"

    second = run_migration(deployment, deployment.env.password)

    assert second.returncode == 0, second.stderr
    assert "Running upgrade" not in second.stderr
    assert sql(db, "SELECT version_num FROM alembic_version") == REVISION
    # --rm: nothing is left behind once the job ends.
    name = f"astats-{deployment.env.stack}-migration"
    assert docker("inspect", name, check=False).returncode != 0


def test_migration_with_a_wrong_password_fails_with_the_database_error(
    deployment: Deployment,
) -> None:
    wrong = f"wrong {uuid.uuid4().hex}"

    result = run_migration(deployment, wrong)

    # What `pulumi up` shows for the failed command: its status and output.
    assert result.returncode != 0
    assert "sqlalchemy.exc.OperationalError" in result.stderr, result.stderr
    assert 'password authentication failed for user "astats"' in result.stderr
    output = result.stdout + result.stderr
    assert wrong not in output and url_for(wrong) not in output
    assert sql(deployment.database, "SELECT to_regclass('public.alembic_version')") == ""


def start_backend(deployed: Deployment, secret_key: str, settings: BackendSettings) -> str:
    """The backend container as the program's `Backend` registers it, created and started."""
    deployed.env.volume("backend-logs")

    def make() -> None:
        Backend(
            "backend",
            BackendInputs(
                stack=deployed.stack,
                release=release(deployed, deployed.env.password, settings),
                secret_key=pulumi.Output.secret(secret_key),
            ),
        )

    graph = register(make, stack=deployed.env.stack)
    registered = graph.containers()["backend"]
    container = registered.inputs
    # Its secrets first, into its files volume (the program's step), then the container.
    files = graph.files_step(registered).inputs
    deployed.volumes.append(graph.named("backend-files").inputs["name"])
    written = run_step(files)
    assert written.returncode == 0, written.stderr
    name = f"astats-test-backend-{uuid.uuid4().hex[:8]}"
    docker(
        "create",
        f"--name={name}",
        *create_flags(container),
        container["image"],
        *create_args(container),
    )
    deployed.containers.append(name)
    connect_networks(name, container)
    docker("start", name)
    apply_pids_limit(graph.named("backend-pids-limit").inputs, name)
    return name


def wait_healthy(container: str) -> None:
    """Wait as `pulumi up` does (wait=True): until healthy, for the check's budget + margin."""
    deadline = time.monotonic() + wait_timeout_s(BACKEND.healthcheck)
    while True:
        state = json.loads(docker("inspect", "--format={{json .State}}", container).stdout)
        status = state.get("Health", {}).get("Status")
        if status == "healthy":
            return
        logs = docker("logs", container, check=False)
        assert status != "unhealthy" and state["Running"], (state, logs.stdout + logs.stderr)
        assert time.monotonic() < deadline, f"never healthy: {state}"
        time.sleep(0.3)


def fetch(deployed: Deployment, backend: str, path: str) -> dict[str, Any]:
    """GET from another container on the edge network, by the backend container's own name,
    as nginx reaches it once the switch has pointed it there."""
    script = (
        "import sys, urllib.request; "
        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
    )
    name = f"astats-test-client-{uuid.uuid4().hex[:8]}"
    deployed.containers.append(name)
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            f"--name={name}",
            f"--network={deployed.edge}",
            deployed.images.python,
            "python",
            "-c",
            script,
            f"http://{backend}:{BACKEND.port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


# uvicorn's exit status on SIGTERM: the launcher has exec'd it, so it is the container's PID 1.
# With several workers the supervisor handles the signal, stops its workers and returns (0); a
# single-worker server re-raises the signal after its graceful shutdown, which PID 1 does not
# die of, so it returns 0 as well.
@pytest.mark.parametrize(
    ("workers", "exit_code", "last_line"),
    [(None, 0, "Stopping parent process"), (1, 0, "Finished server process")],
    ids=["derived-workers", "one-worker"],
)
def test_backend_container_serves_the_migrated_database_and_stops_gracefully(
    deployment: Deployment, workers: int | None, exit_code: int, last_line: str
) -> None:
    settings = BACKEND.model_copy(update={"workers": workers})
    derived = uvicorn_workers(
        cpus=settings.cpus, memory_mb=settings.memory_mb, worker_memory_mb=settings.worker_memory_mb
    )
    count = derived if workers is None else workers
    assert f"--workers={count}" in uvicorn_command(settings) and (count > 1) == (workers is None)
    migrated = run_migration(deployment, deployment.env.password)
    assert migrated.returncode == 0, migrated.stderr
    secret_key = f"key {uuid.uuid4().hex} $HOME'\""
    backend = start_backend(deployment, secret_key, settings)

    wait_healthy(backend)

    assert fetch(deployment, backend, settings.health_path) == {
        "status": "ok",
        "database_configured": True,
        "secret_key_configured": True,
    }
    assert fetch(deployment, backend, "/api/db") == {
        "configured": True,
        "revision": REVISION,
        "notes": 0,
    }
    sql(deployment.database, "INSERT INTO cockpit_notes (body) VALUES ('from the test')")
    assert fetch(deployment, backend, "/api/db")["notes"] == 1
    inspected = docker("inspect", backend).stdout
    for secret in (deployment.env.password, url_for(deployment.env.password), secret_key):
        assert secret not in inspected

    # A stop as `pulumi destroy`/replacement does it: SIGTERM, then the container's grace.
    # Traffic has already left it (the switch), so the stop goes straight to uvicorn.
    started = time.monotonic()
    docker("stop", backend)
    stopped_after_s = time.monotonic() - started
    state = json.loads(docker("inspect", "--format={{json .State}}", backend).stdout)
    logs = docker("logs", backend)

    # Ended by uvicorn's own graceful shutdown, well before the SIGKILL deadline.
    assert stopped_after_s < STOP_GRACE_S
    assert (state["ExitCode"], state["OOMKilled"]) == (exit_code, False), logs.stderr[-3000:]
    assert "Application shutdown complete." in logs.stderr
    assert f"INFO:     {last_line}" in logs.stderr

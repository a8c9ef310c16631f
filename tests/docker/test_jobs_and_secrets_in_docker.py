"""The one-shot job command and the secrets launcher, run by a real Docker engine."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid

from components.container import Tmpfs
from components.jobs import JobSpec, docker_run_argv
from components.launcher import SECRETS_DIR, launcher_entrypoint
from tests.support.docker import docker, wait_for_log, write_files

SECRET = "s3cr3t with spaces/$HOME'\""


def job(command: list[str]) -> JobSpec:
    # The job's container name is fixed per spec; unique per test, so parallel workers never
    # meet each other's job.
    return JobSpec(
        stack="test",
        name=f"migration-{uuid.uuid4().hex[:8]}",
        service="migration",
        image="unused",
        network="unused",
        command=command,
        memory_mb=64,
        secret_env="DATABASE_URL",
        user="1000:1000",
        pids_limit=32,
        envs={"PGHOST": "db"},
        tmpfs=[Tmpfs("/tmp", 1)],
    )


def run(spec: JobSpec, image: str, network: str) -> subprocess.CompletedProcess[str]:
    argv = docker_run_argv(spec, image, network, [])
    return subprocess.run(argv, input=SECRET + "\n", capture_output=True, text=True, timeout=60)


def test_job_gets_its_secret_from_stdin_and_succeeds(shell_image: str, network: str) -> None:
    result = run(job(["sh", "-c", 'echo "url=$DATABASE_URL host=$PGHOST"']), shell_image, network)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"url={SECRET} host=db"


def test_a_job_runs_unprivileged_on_a_read_only_root_writing_only_its_tmpfs(
    shell_image: str, network: str
) -> None:
    script = "id -u; echo x > /probe || echo refused; echo y > /tmp/probe && cat /tmp/probe"
    result = run(job(["sh", "-c", script]), shell_image, network)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1000", "refused", "y"]
    assert "Read-only file system" in result.stderr


def test_failing_job_fails_with_its_own_status_and_output(shell_image: str, network: str) -> None:
    failing = ["sh", "-c", "echo 'alembic: Target database is not up to date.' >&2; exit 4"]
    result = run(job(failing), shell_image, network)
    assert result.returncode == 4
    assert "Target database is not up to date." in result.stderr


def test_running_job_is_labelled_keeps_secret_out_of_its_config_and_cannot_run_twice(
    shell_image: str, network: str
) -> None:
    spec = job(["sh", "-c", "sleep 3"])
    first: dict[str, subprocess.CompletedProcess[str]] = {}
    runner = threading.Thread(target=lambda: first.update(r=run(spec, shell_image, network)))
    runner.start()
    name = f"astats-test-{spec.name}"
    deadline = time.monotonic() + 20
    while docker("inspect", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, "job container never appeared"
        time.sleep(0.1)
    config = json.loads(docker("inspect", name).stdout)[0]["Config"]
    second = run(spec, shell_image, network)
    runner.join()

    assert config["Labels"] == {"astats.service": "migration", "astats.stack": "test"}
    assert SECRET not in json.dumps(config)
    assert second.returncode != 0 and "already in use" in second.stderr
    assert first["r"].returncode == 0
    # --rm: nothing is left behind once the job ends.
    assert docker("inspect", name, check=False).returncode != 0


def launched(image: str, volume: str, *command: str) -> str:
    """A container of `image` through the program's launcher, read-only, its secrets in
    `volume` mounted where the launcher reads them."""
    entrypoint = launcher_entrypoint()
    return docker(
        "create",
        "--user=1000:1000",
        "--read-only",
        "--cap-drop=ALL",
        f"--volume={volume}:{SECRETS_DIR}:ro",
        f"--entrypoint={entrypoint[0]}",
        image,
        *entrypoint[1:],
        *command,
    ).stdout.strip()


def test_launcher_exports_the_secret_files_not_visible_to_inspect(shell_image: str) -> None:
    volume = f"astats-test-files-{uuid.uuid4().hex[:8]}"
    created = ""
    try:
        # What the program's files step does before the container starts.
        write_files("test", "backend", shell_image, volume, {"SECRET_KEY": SECRET})
        created = launched(shell_image, volume, "sh", "-c", 'echo "$SECRET_KEY"')
        docker("start", "--attach", created)
        logs = docker("logs", created)
        inspected = docker("inspect", created).stdout
    finally:
        docker("rm", "-f", created, check=False)
        docker("volume", "rm", "-f", volume, check=False)
    assert logs.stdout.strip() == SECRET
    assert SECRET not in inspected


def test_a_stop_reaches_the_service_behind_the_launcher_at_once(shell_image: str) -> None:
    service = (
        'trap "echo service-stopped; exit 0" TERM; echo service-started; while :; do sleep 1; done'
    )
    volume = f"astats-test-files-{uuid.uuid4().hex[:8]}"
    docker("volume", "create", volume)
    created = launched(shell_image, volume, "sh", "-c", service)
    try:
        docker("start", created)
        wait_for_log(created, "service-started")
        # The launcher has exec'd the service: PID 1 is the service, and Docker's SIGTERM
        # reaches it without a SIGKILL after the grace time.
        docker("stop", "--time=30", created)
        state = json.loads(docker("inspect", "--format={{json .State}}", created).stdout)
        logs = docker("logs", created)
    finally:
        docker("rm", "-f", created, check=False)
        docker("volume", "rm", "-f", volume, check=False)
    assert state["ExitCode"] == 0
    assert "service-stopped" in logs.stdout

"""The whole stack as the program registers it, up on a real engine, with least privilege:
every container's root file system is read-only, writable only in its volumes and the `tmpfs`
the program gives it; it has no capability; it runs as its own unprivileged user; a fork loop
stops at its PIDs limit while the service keeps serving. And the stack still works: a page and
the API through nginx, the migrated database, the scheduler's backup, drill, restore and the
rotation of the backend's log, all with those limits.

The graph is the real program's, evaluated on Pulumi's mocks with the dev stack's settings (a
free host port; short backup intervals), and brought up by `tests/support/docker_stack.py` in
rollout order: the files steps, the containers with the flags their registered inputs give,
the PIDs limit steps, the pre-migration backup, the migration, the traffic switch (with its
hand-over of the upstream files to nginx's user) and the asset publisher. One stack serves the
module; it is removed afterwards.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.backend import LOG_FILE
from components.backup import BACKUPS_MOUNT, LOGS_MOUNT, STATUS_FILE
from components.switch import UPSTREAM_DIR
from tests.docker.images import FRONTEND_CHUNK
from tests.proxy.harness import free_port
from tests.pulumi_harness import Graph, dev_config, evaluate
from tests.support.docker import docker
from tests.support.docker_stack import DockerStack

SERVICES = ("db", "backend", "frontend", "nginx", "backup")
# Forked until fork fails, each child a `sleep` that holds one PID; the loop reports how many
# it made and the error that stopped it, keeps them while the test asks the service, then ends
# them when its stdin closes.
FORK_LOOP = r"""
my @kids;
while (1) {
  my $pid = fork;
  if (!defined $pid) { print scalar(@kids), " $!\n"; last }
  if ($pid == 0) { exec "sleep", "120"; exit 1 }
  push @kids, $pid;
}
$| = 1;
print "holding\n";
<STDIN>;
kill "KILL", @kids;
waitpid($_, 0) for @kids;
"""


@pytest.fixture(scope="module")
def graph() -> Graph:
    settings = dev_config()
    settings["nginx"] = {**settings["nginx"], "httpPort": free_port(), "bindAddress": "127.0.0.1"}
    settings["backup"] = {**settings["backup"], "logRotateMaxMb": 1}
    return evaluate(settings, stack=f"lp{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def stack(graph: Graph, stack_images: dict[str, str]) -> Iterator[DockerStack]:
    deployed = DockerStack(graph, stack_images)
    try:
        deployed.up()
        yield deployed
    finally:
        deployed.down()


def inspect(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(docker("inspect", name).stdout)[0]
    return found


def in_container(
    name: str, script: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`script` through /bin/sh in the container, as its own user unless `user` is given."""
    as_user = [f"--user={user}"] if user else []
    return docker("exec", *as_user, name, "/bin/sh", "-c", script, check=False)


def pids_file(name: str, file: str) -> Path:
    """A file of the container's pids cgroup, read from the host: inside, even a `cat` needs a
    PID the loop holds."""
    pid = inspect(name)["State"]["Pid"]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            return Path(f"/sys/fs/cgroup{path}/{file}")
        if "pids" in controllers.split(","):
            return Path(f"/sys/fs/cgroup/pids{path}/{file}")
    raise AssertionError(f"no pids cgroup for {name}")


def refused_forks(name: str) -> int:
    """How many forks the container's PIDs limit has refused (pids.events `max`)."""
    for line in pids_file(name, "pids.events").read_text().splitlines():
        key, _, count = line.partition(" ")
        if key == "max":
            return int(count)
    raise AssertionError(f"no max count in {name}'s pids.events")


def url(graph: Graph, path: str) -> str:
    port = int(graph.containers()["nginx"].inputs["ports"][0]["external"])
    return f"http://127.0.0.1:{port}{path}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_container_is_read_only_without_capabilities_as_an_unprivileged_user(
    stack: DockerStack, graph: Graph, service: str
) -> None:
    name = stack.containers[service]
    host = inspect(name)["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["PidsLimit"] == graph.pids_limit(graph.containers()[service])
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    ids = in_container(name, "id -u; id -G; grep Cap /proc/self/status")
    assert ids.returncode == 0, ids.stderr
    uid, groups, *caps = ids.stdout.splitlines()
    assert uid != "0" and "0" not in groups.split()
    assert all(line.split()[1] == "0000000000000000" for line in caps), caps


@pytest.mark.parametrize("service", SERVICES)
def test_a_write_to_the_root_file_system_fails_and_each_tmpfs_takes_one(
    stack: DockerStack, graph: Graph, service: str
) -> None:
    name = stack.containers[service]
    refused = in_container(name, "echo x > /probe")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    # Not even root, for whoever gets a shell in the container.
    as_root = in_container(name, "echo x > /etc/probe", user="0:0")
    assert as_root.returncode != 0 and "Read-only file system" in as_root.stderr
    scratch = graph.containers()[service].inputs["tmpfs"]
    assert scratch, "every service has somewhere to write its scratch files"
    for path, options in scratch.items():
        assert "noexec" in options.split(",") and "size=" in options
        wrote = in_container(name, f'p="{path}/probe-$$" && echo x > "$p" && cat "$p" && rm "$p"')
        assert (wrote.returncode, wrote.stdout) == (0, "x\n"), (path, wrote.stderr)


def test_the_secrets_and_config_volumes_are_read_only_in_their_container(
    stack: DockerStack, graph: Graph
) -> None:
    for service, container in graph.containers().items():
        files = [
            v for v in container.inputs.get("volumes", []) if v["volumeName"].endswith("-files")
        ]
        if service == "frontend":
            assert files == []
            continue
        [volume] = files
        assert volume["readOnly"] is True
        refused = in_container(stack.containers[service], f"touch {volume['containerPath']}/x")
        assert refused.returncode != 0, service


@pytest.mark.parametrize("service", SERVICES)
def test_a_fork_loop_stops_at_the_pids_limit_and_the_service_keeps_serving(
    stack: DockerStack, graph: Graph, service: str
) -> None:
    name = stack.containers[service]
    limit = graph.pids_limit(graph.containers()[service])
    path = "/" if service != "backend" else "/health"
    if service in ("backend", "frontend", "nginx"):
        # Served requests first, as a running stack has. The backend's /health is async: it
        # takes no thread from FastAPI's pool, which the loop would keep from growing.
        with httpx.Client(timeout=10) as client:
            for _ in range(30):
                client.get(url(graph, path))
    loop = subprocess.Popen(
        ["docker", "exec", "--interactive", name, "perl", "-e", FORK_LOOP],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert loop.stdout is not None
        made, _, why = loop.stdout.readline().strip().partition(" ")
        assert loop.stdout.readline() == "holding\n"
        assert why == "Resource temporarily unavailable", (made, why)
        assert 0 < int(made) < limit
        # The kernel refused forks at the limit. (The task count itself is no measure: the
        # kernel checks forks, not moves into the cgroup, and each `docker exec`, a health
        # check, moves a process in past the limit.)
        assert refused_forks(name) > 0
        if service in ("backend", "frontend", "nginx"):
            # Serving takes no new process: nginx and the apps answer through the limit.
            page = httpx.get(url(graph, path), timeout=10)
            assert page.status_code == 200
    finally:
        if loop.stdin is not None:
            loop.stdin.close()
        loop.wait(timeout=60)
    assert loop.returncode == 0, loop.stderr.read() if loop.stderr else ""
    # The limit held the loop, not the service: it is still up and passes its health check.
    stack.wait_healthy(name, 60)
    kind, *health = graph.containers()[service].inputs["healthcheck"]["tests"]
    argv = ["/bin/sh", "-c", health[0]] if kind == "CMD-SHELL" else health
    checked = docker("exec", name, *argv, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_stack_serves_pages_the_api_and_static_files_through_nginx(
    stack: DockerStack, graph: Graph
) -> None:
    assert httpx.get(url(graph, "/healthz"), timeout=10).text == "ok\n"
    assert "frontend stand-in" in httpx.get(url(graph, "/"), timeout=10).text
    assert httpx.get(url(graph, "/api/db"), timeout=10).json()["configured"] is True
    chunk = httpx.get(url(graph, f"/{FRONTEND_CHUNK}"), timeout=10)
    assert chunk.status_code == 200 and "astats" in chunk.text


def test_the_upstream_files_belong_to_nginx_and_a_switch_reloads_it(
    stack: DockerStack, graph: Graph
) -> None:
    nginx = stack.containers["nginx"]
    listing = f"stat -c '%u:%g %n' {UPSTREAM_DIR} {UPSTREAM_DIR}/*"
    owners = in_container(nginx, listing)
    assert owners.returncode == 0, owners.stderr
    assert all(line.startswith("101:101 ") for line in owners.stdout.splitlines()), owners.stdout
    # A rollout's switch runs into the running nginx, as nginx's user, and reloads it.
    assert "serving" in switch_backend(stack, graph)
    assert httpx.get(url(graph, "/api/db"), timeout=10).status_code == 200
    # Files an nginx of before wrote as root are handed to nginx's user by the next switch.
    volume = graph.containers()["nginx"].inputs["volumes"]
    upstreams = next(v["volumeName"] for v in volume if v["containerPath"] == UPSTREAM_DIR)
    docker(
        "run", "--rm", f"--volume={upstreams}:/u", stack.images["nginx"], "chown", "-R", "0:0", "/u"
    )
    assert in_container(nginx, f"test -w {UPSTREAM_DIR}").returncode != 0
    assert "serving" in switch_backend(stack, graph)
    handed = in_container(nginx, listing).stdout.splitlines()
    assert all(line.startswith("101:101 ") for line in handed), handed
    assert httpx.get(url(graph, "/api/db"), timeout=10).status_code == 200


def switch_backend(stack: DockerStack, graph: Graph) -> str:
    """The backend's switch step, run again as a rollout runs it; what it printed."""
    switch = graph.named("backend-switch").inputs
    again = subprocess.run(
        ["/bin/sh", "-c", _with_images(stack, switch["create"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "switch-upstream: backend: serving" in again.stdout
    return again.stdout


def _with_images(stack: DockerStack, text: str) -> str:
    for old, new in stack.replacements().items():
        text = text.replace(old, new)
    return text


def test_the_migration_and_the_pre_migration_backup_ran_read_only(stack: DockerStack) -> None:
    backup = stack.steps["pre-migration-backup"].strip()
    assert backup.startswith(f"{BACKUPS_MOUNT}/") and backup.endswith(".dump")
    assert "migration" in stack.steps


def scheduler_status(stack: DockerStack) -> dict[str, Any]:
    shown = docker("exec", stack.containers["backup"], "cat", STATUS_FILE)
    status: dict[str, Any] = json.loads(shown.stdout)
    return status


def test_the_scheduler_backs_up_and_drills_as_postgres_on_a_read_only_root(
    stack: DockerStack,
) -> None:
    status = scheduler_status(stack)
    assert status["last_result"] == "success", status
    assert status["steps"]["drill"].startswith("drill ok"), status


def test_a_restore_in_the_scheduler_brings_the_backup_back(
    stack: DockerStack, graph: Graph
) -> None:
    """As the console restores: the backend stopped, then `astats_ops restore` in the
    scheduler through its launcher (its secrets), then the backend started again: from its
    read-only image, its tmpfs fresh, its PIDs limit kept."""
    scheduler, backend = stack.containers["backup"], stack.containers["backend"]
    launcher = graph.containers()["backup"].inputs["entrypoints"]
    # A backup taken now, of the migrated schema: the scheduler's first one may predate the
    # migration, and restoring it would rightly leave the backend without its tables.
    taken = docker(
        "exec", scheduler, *launcher, "python3", "-m", "astats_ops", "backup", "--dest", "/backups"
    )
    latest = taken.stdout.strip().splitlines()[-1]
    ops = ["python3", "-m", "astats_ops", "restore", latest, "--yes"]
    docker("stop", backend)
    try:
        restored = docker("exec", scheduler, *launcher, *ops, check=False)
    finally:
        docker("start", backend)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"restored {latest} into database")
    stack.wait_healthy(backend, 120)
    assert inspect(backend)["HostConfig"]["PidsLimit"] == graph.pids_limit(
        graph.containers()["backend"]
    )
    assert httpx.get(url(graph, "/api/db"), timeout=10).json()["configured"] is True


def test_the_scheduler_rotates_the_log_the_backend_writes(stack: DockerStack, graph: Graph) -> None:
    backend, scheduler = stack.containers["backend"], stack.containers["backup"]
    log_dir = next(
        e.split("=", 1)[1]
        for e in graph.containers()["backend"].inputs["envs"]
        if e.startswith("LOG_DIR=")
    )
    # As the backend's own process writes it: with the umask its launcher left to PID 1.
    line = "2024-05-01T12:00:00Z INFO request handled in 3 ms"
    wrote = in_container(
        backend,
        "umask $(awk '/^Umask/ {print $2}' /proc/1/status) && "
        f"for i in $(seq 30000); do echo '{line}'; done > {log_dir}/{LOG_FILE} && "
        f"stat -c '%a %u:%g' {log_dir} {log_dir}/{LOG_FILE}",
    )
    assert wrote.returncode == 0, wrote.stderr
    directory, log = wrote.stdout.splitlines()
    assert directory.startswith("775 ") and log.startswith("664 "), wrote.stdout
    command = graph.containers()["backup"].inputs["command"]
    rotate = [a for a in command if a.startswith("--rotate-")]
    args = {k.removeprefix("--rotate-"): v for k, _, v in (a.partition("=") for a in rotate)}
    rotated = docker(
        "exec",
        scheduler,
        "python3",
        "-m",
        "astats_ops",
        "rotate-log",
        args["log"],
        f"--max-bytes={args['max-bytes']}",
        f"--keep={args['keep']}",
        check=False,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith(f"rotated {LOGS_MOUNT}/{LOG_FILE}"), rotated.stdout
    sizes = in_container(backend, f"stat -c '%s %n' {log_dir}/{LOG_FILE} {log_dir}/{LOG_FILE}.1")
    live, copy = sizes.stdout.splitlines()
    assert live.startswith("0 ") and int(copy.split()[0]) == 30000 * (len(line) + 1)
    # The backend still writes to the file it keeps open (copytruncate).
    appended = in_container(backend, f"echo more >> {log_dir}/{LOG_FILE}")
    assert appended.returncode == 0, appended.stderr

"""The Docker CLI as the Docker tests drive it: commands, uploads, waiting for a log line."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.container import Tmpfs, files_stdin, write_files_command


def docker(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, check=check
    )


def upload(container: str, files: dict[str, tuple[str, int]], scratch: Path) -> None:
    """Copy files in as the provider's `uploads` do: one tar of absolute paths unpacked at /."""
    archive = scratch / "uploads.tar"
    with tarfile.open(archive, "w") as tar:
        for path, (content, mode) in files.items():
            data = content.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    with archive.open("rb") as stream:
        subprocess.run(["docker", "cp", "-", f"{container}:/"], stdin=stream, check=True)


def wait_for_log(container: str, text: str) -> None:
    """Wait until `text` shows in the container's output (a readiness or progress line)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = docker("logs", container)
        if text in logs.stdout + logs.stderr:
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the logs of {container}")


def create_flags(container: Mapping[str, Any]) -> list[str]:
    """`docker create` flags for the inputs a program registers for a `docker.Container`, as
    the provider would apply them, up to the image; the networks after the first are joined
    with `connect_networks` once created.

    The Docker CLI has one healthcheck form only, ``CMD-SHELL``: a ``CMD-SHELL`` check is its
    one string, a ``CMD`` check's arguments are joined with ``shlex.join``, which the
    container's /bin/sh splits back.
    """
    # Numbers come back through protobuf's Struct as floats (768.0), which the CLI refuses.
    check = container["healthcheck"]
    kind, *test = check["tests"]
    assert kind in ("CMD", "CMD-SHELL"), check
    health_cmd = test[0] if kind == "CMD-SHELL" else shlex.join(test)
    first, *_ = container["networksAdvanced"]
    return [
        f"--network={first['name']}",
        *[f"--network-alias={alias}" for alias in first.get("aliases", [])],
        f"--memory={int(container['memory'])}m",
        f"--memory-swap={int(container['memorySwap'])}m",
        f"--cpus={container['cpus']}",
        *([f"--shm-size={int(container['shmSize'])}m"] if "shmSize" in container else []),
        *([f"--user={container['user']}"] if "user" in container else []),
        *[f"--group-add={gid}" for gid in container.get("groupAdds", [])],
        *(["--read-only"] if container.get("readOnly") else []),
        *[f"--tmpfs={path}:{opts}" for path, opts in sorted(container.get("tmpfs", {}).items())],
        *[f"--cap-drop={cap}" for cap in container.get("capabilities", {}).get("drops", [])],
        *[f"--cap-add={cap}" for cap in container.get("capabilities", {}).get("adds", [])],
        f"--restart={container['restart']}",
        *[f"--security-opt={opt}" for opt in container["securityOpts"]],
        f"--log-driver={container['logDriver']}",
        *[f"--log-opt={k}={v}" for k, v in sorted(container.get("logOpts", {}).items())],
        *[f"--label={item['label']}={item['value']}" for item in container["labels"]],
        *[f"--env={env}" for env in container.get("envs", [])],
        *[
            f"--volume={v['volumeName']}:{v['containerPath']}{':ro' if v.get('readOnly') else ''}"
            for v in container.get("volumes", [])
        ],
        f"--health-cmd={health_cmd}",
        f"--health-interval={check['interval']}",
        f"--health-timeout={check['timeout']}",
        f"--health-retries={int(check['retries'])}",
        f"--health-start-period={check['startPeriod']}",
        # The provider's destroy_grace_seconds: how long a stop may take before SIGKILL.
        f"--stop-timeout={int(container['destroyGraceSeconds'])}",
        *([f"--entrypoint={container['entrypoints'][0]}"] if "entrypoints" in container else []),
    ]


def create_args(container: Mapping[str, Any]) -> list[str]:
    """What follows the image on the `docker create` line: the rest of the entrypoint, then
    the command."""
    return [*container.get("entrypoints", [])[1:], *container.get("command", [])]


def connect_networks(name: str, container: Mapping[str, Any]) -> None:
    for network in container["networksAdvanced"][1:]:
        aliases = [f"--alias={alias}" for alias in network.get("aliases", [])]
        docker("network", "connect", *aliases, network["name"], name)


def run_step(
    step: Mapping[str, Any], env: Mapping[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """A pulumi-command step as the provider runs it: its `create` line through /bin/sh -c, with
    its stdin and its environment (`env` first: a test's names for what the mocks made up)."""
    return subprocess.run(
        ["/bin/sh", "-c", step["create"]],
        input=step.get("stdin", ""),
        env={**os.environ, **step.get("environment", {}), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def write_files(
    stack: str, service: str, image: str, volume: str, contents: Mapping[str, str]
) -> None:
    """What the program's files step does for a service (components/container.py): `contents`
    written into `volume` by a throwaway container of `image`."""
    result = subprocess.run(
        ["/bin/sh", "-c", write_files_command(stack, service, image, volume)],
        input=files_stdin(contents),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def hardened(user: str, tmpfs: Sequence[Tmpfs], pids_limit: int = 128) -> list[str]:
    """`docker create` flags for what every container of the stack gets: its user, a read-only
    root with `tmpfs` where it writes, no capability, a PIDs limit, no new privileges."""
    return [
        f"--user={user}",
        "--read-only",
        *[f"--tmpfs={t.path}:{t.options()}" for t in tmpfs],
        "--cap-drop=ALL",
        f"--pids-limit={pids_limit}",
        "--security-opt=no-new-privileges:true",
    ]


def apply_pids_limit(step: Mapping[str, Any], container: str) -> None:
    """The step after a container that puts its PIDs limit on it, on `container`."""
    result = run_step(step, {"CONTAINER": container})
    assert result.returncode == 0, result.stderr

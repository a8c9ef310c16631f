"""The Docker CLI as the Docker tests drive it: commands, uploads, waiting for a log line."""

from __future__ import annotations

import io
import shlex
import subprocess
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


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

    The Docker CLI has one healthcheck form only, ``CMD-SHELL``: the program's ``CMD``
    arguments are joined with ``shlex.join``, which the container's /bin/sh splits back.
    """
    # Numbers come back through protobuf's Struct as floats (768.0), which the CLI refuses.
    check = container["healthcheck"]
    assert check["tests"][0] == "CMD", check
    first, *_ = container["networksAdvanced"]
    return [
        f"--network={first['name']}",
        *[f"--network-alias={alias}" for alias in first.get("aliases", [])],
        f"--memory={int(container['memory'])}m",
        f"--memory-swap={int(container['memorySwap'])}m",
        f"--cpus={container['cpus']}",
        *([f"--shm-size={int(container['shmSize'])}m"] if "shmSize" in container else []),
        *([f"--user={container['user']}"] if "user" in container else []),
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
        f"--health-cmd={shlex.join(check['tests'][1:])}",
        f"--health-interval={check['interval']}",
        f"--health-timeout={check['timeout']}",
        f"--health-retries={int(check['retries'])}",
        f"--health-start-period={check['startPeriod']}",
        # The provider's destroy_grace_seconds: how long a stop may take before SIGKILL.
        f"--stop-timeout={int(container['destroyGraceSeconds'])}",
        f"--entrypoint={container['entrypoints'][0]}",
    ]


def create_args(container: Mapping[str, Any]) -> list[str]:
    """What follows the image on the `docker create` line: the rest of the entrypoint, then
    the command."""
    return [*container["entrypoints"][1:], *container.get("command", [])]


def connect_networks(name: str, container: Mapping[str, Any]) -> None:
    for network in container["networksAdvanced"][1:]:
        aliases = [f"--alias={alias}" for alias in network.get("aliases", [])]
        docker("network", "connect", *aliases, network["name"], name)


def registered_uploads(container: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """The files the provider writes into the container before it starts, for `upload`."""
    return {
        item["file"]: (item["content"], int(item["permissions"], 8))
        for item in container.get("uploads", [])
    }

"""``status`` and ``watch`` on a real engine: an OOM kill, a failing healthcheck, a restart
loop; a loopback webhook receives the watch's reports."""

from __future__ import annotations

import json
import time
from typing import Any

from docker.models.containers import Container

from tests.console.conftest import Images, Receiver
from tests.console.helpers import WAIT_S, Running, astats
from tests.console.ministack import MiniStack, health

# Allocates past the limit on its first run only (the marker survives the restart), so the
# container is running again afterwards, as an operator would find it.
OOM_ONCE = (
    "import os, time\n"
    "if not os.path.exists('/tmp/ran'):\n"
    "    open('/tmp/ran', 'w').close()\n"
    "    b = bytearray(256 * 1024 * 1024)\n"
    "time.sleep(600)\n"
)


def restarted(container: Container, times: int, *, running: bool) -> None:
    """Wait (on a busy host too) until the engine has restarted the container ``times``."""
    deadline = time.monotonic() + WAIT_S
    while True:
        container.reload()
        if container.attrs["RestartCount"] >= times and (container.status == "running") >= running:
            return
        assert time.monotonic() < deadline, f"{container.name}: {container.attrs['State']}"
        time.sleep(0.1)


def troubled(stack: MiniStack, images: Images) -> None:
    oom = stack.create(
        "frontend", images.python, ["python3", "-c", OOM_ONCE], memory_mb=32, restart="on-failure"
    )
    loop = stack.create(
        "nginx", images.python, ["sh", "-c", "echo crash; sleep 0.2; exit 3"], restart="always"
    )
    sick = stack.create(
        "backend",
        images.python,
        ["sleep", "600"],
        healthcheck=health(["CMD-SHELL", "echo HTTP Error 500 from /health; exit 1"], retries=1),
    )
    stack.wait_for(sick, "unhealthy")
    restarted(oom, 1, running=True)
    restarted(loop, 3, running=False)


def test_status_names_each_problem_on_its_own_line_and_exits_1(
    ministack: MiniStack, console_images: Images
) -> None:
    steady = ministack.create(
        "db", console_images.python, ["sleep", "600"], healthcheck=health(["CMD", "true"])
    )
    ministack.wait_for(steady, "healthy")
    assert astats(ministack.name, "status").returncode == 0

    troubled(ministack, console_images)
    result = astats(ministack.name, "status", "--restarts", "3", "--window", "10m")
    assert result.returncode == 1, result.stderr
    attention = [line for line in result.stdout.splitlines() if line.startswith("ATTENTION")]
    assert "ATTENTION backend: unhealthy: HTTP Error 500 from /health" in attention
    assert "ATTENTION frontend: OOM-killed since it started (memory limit too small?)" in attention
    assert any(line.startswith("ATTENTION nginx: restart loop, ") for line in attention)
    assert not any(line.startswith("ATTENTION db") for line in attention)

    report = json.loads(astats(ministack.name, "status", "--json").stdout)
    rows: dict[str, Any] = {row["service"]: row for row in report["services"]}
    assert report["ok"] is False
    # Exit codes of containers started again come from the engine's event buffer, which other
    # tests' health checks may have overrun; the OOM flag and restart count do not depend on it.
    assert rows["frontend"]["oom_killed"] and rows["frontend"]["exit_code"] in (137, None)
    assert rows["frontend"]["state"] == "running" and rows["frontend"]["restarts"] == 1
    assert rows["frontend"]["memory_limit"] == 32 * 1024 * 1024
    assert rows["backend"]["health_output"] == "HTTP Error 500 from /health"
    assert rows["nginx"]["exit_code"] in (3, None)
    assert rows["db"]["health"] == "healthy" and rows["db"]["cpu_percent"] is not None
    assert report["disk"]["total"] > 0
    assert report["backups"] is None


def posted(receiver: Receiver) -> set[tuple[str, str]]:
    return {(body["kind"], body["service"]) for body in receiver.bodies}


def test_watch_reports_each_problem_and_posts_it(
    ministack: MiniStack, console_images: Images, receiver: Receiver
) -> None:
    steady = ministack.create("db", console_images.python, ["sleep", "600"])
    watch = Running(
        ministack.name,
        "watch",
        "--webhook",
        receiver.url,
        "--restarts",
        "3",
        "--window",
        "10m",
        "--check-every",
        "1s",
    )
    try:
        watch.wait_for(lambda lines: any("watching stack" in line for line in lines), "stderr")
        troubled(ministack, console_images)

        def kinds(lines: list[str]) -> set[str]:
            return {" ".join(line.split()[1:3]) for line in lines}

        wanted = {"oom frontend", "exit frontend", "restart-loop nginx", "unhealthy backend"}
        lines = watch.wait_for(lambda got: wanted <= kinds(got))
        assert any("exited with code 137" in line for line in lines if " frontend " in line)
        assert any("HTTP Error 500 from /health" in line for line in lines if "unhealthy" in line)
        assert not any(" db " in line for line in lines), steady.name
        # Posts go out from a background thread: give them the time a retry may take.
        wanted_posts = {("oom", "frontend"), ("restart-loop", "nginx"), ("unhealthy", "backend")}
        deadline = time.monotonic() + WAIT_S
        while not wanted_posts <= posted(receiver) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        watch.stop()
    assert wanted_posts <= posted(receiver)
    assert all(body["stack"] == ministack.name for body in receiver.bodies)

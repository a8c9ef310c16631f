"""nginx's entrypoint (components/files/nginx-run.sh) under dash and busybox: with a watched
certificate, a change reloads nginx gracefully, and a change `nginx -t` refuses is logged and
not loaded. The `nginx` here is a stand-in that records how it is called; a reload under real
nginx with a renewed certificate is tested in tests/docker/test_acme.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.nginx import RUN_SCRIPT
from tests.shipped.conftest import path_for

STAND_IN = """#!/bin/sh
# Records each call; `-t` fails while $STATE/refuse exists; the foreground run waits.
echo "$*" >>"$STATE/calls"
case "$*" in
  *"-t"*) [ ! -e "$STATE/refuse" ] ;;
  *"daemon off;"*) exec sleep 60 ;;
esac
"""


@pytest.fixture
def started(shell: list[str], tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "nginx"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    cert = tmp_path / "fullchain.pem"
    cert.write_text("first\n")
    process = subprocess.Popen(
        [*shell, "-c", RUN_SCRIPT, "nginx-run", str(cert)],
        env={
            "PATH": f"{bin_dir}:{path_for(shell)}",
            "STATE": str(tmp_path),
            "NGINX_COMMAND": f"{stand_in} -e stderr -c /conf",
            "WATCH_INTERVAL_S": "0.2",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    yield tmp_path, process
    # nginx and its watcher, as stopping the container would.
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)


def calls(state: Path) -> list[str]:
    path = state / "calls"
    return path.read_text().splitlines() if path.exists() else []


def wait_for(state: Path, count: int) -> list[str]:
    for _ in range(100):
        if len(calls(state)) >= count:
            break
        time.sleep(0.1)
    return calls(state)


def test_nginx_runs_in_the_foreground_and_a_changed_certificate_reloads_it(
    started: tuple[Path, subprocess.Popen[str]],
) -> None:
    state, _ = started
    assert wait_for(state, 1) == ["-e stderr -c /conf -g daemon off;"]
    time.sleep(0.6)
    assert len(calls(state)) == 1, "nothing changed, nothing reloads"
    (state / "fullchain.pem").write_text("renewed\n")
    assert wait_for(state, 3)[1:] == ["-e stderr -c /conf -t", "-e stderr -c /conf -s reload"]


def test_a_change_nginx_refuses_is_not_loaded(
    started: tuple[Path, subprocess.Popen[str]],
) -> None:
    state, process = started
    wait_for(state, 1)
    time.sleep(0.6)  # the watcher has read the first certificate
    (state / "refuse").touch()
    (state / "fullchain.pem").write_text("broken\n")
    assert wait_for(state, 2)[1:] == ["-e stderr -c /conf -t"]
    time.sleep(0.6)
    assert len(calls(state)) == 2, "a refused change is not retried until it changes again"
    assert process.poll() is None, "nginx keeps running"

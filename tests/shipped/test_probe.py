"""The web services' health probe, run as Docker runs a `CMD-SHELL` check (`/bin/sh -c`), by
dash with this machine's bash, and by dash on a PATH without bash (the image's own runtime)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from components.probe import http_probe
from tests.support.ci import unavailable
from tests.support.http_status import StatusHandler

FALLBACK = [
    "python3",
    "-c",
    "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2).close()",
]


@pytest.fixture(params=["bash", "no-bash"])
def path(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """PATH as the container has it: with bash, or with only sh and python3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())
    for program in ["dash"] + (["bash"] if request.param == "bash" else []):
        found = shutil.which(program)
        if found is None:
            unavailable(f"{program} is not installed")
        (bin_dir / program).symlink_to(found)
    (bin_dir / "sh").symlink_to(bin_dir / "dash")
    return str(bin_dir)


def check(test: list[str], path: str) -> tuple[int, str]:
    """Exit code and stderr; the timeout catches a probe that would hang."""
    assert test[0] == "CMD-SHELL"
    result = subprocess.run(
        [f"{path}/sh", "-c", test[1]],
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, result.stderr


def probe(port: int, healthy: str = "[23]??") -> list[str]:
    return http_probe(
        port, "/health", healthy=healthy, fallback=[*FALLBACK, f"http://127.0.0.1:{port}/health"]
    )


@pytest.mark.parametrize(("status", "healthy"), [(200, 0), (404, 1), (503, 1)])
def test_the_probe_passes_on_success_only(
    status_server: tuple[int, type[StatusHandler]], path: str, status: int, healthy: int
) -> None:
    port, handler = status_server
    handler.status = status
    code, _ = check(probe(port), path)
    assert (code == 0) == (healthy == 0), (status, code)


def test_the_frontend_pattern_counts_anything_below_500_as_up(
    status_server: tuple[int, type[StatusHandler]], path: str
) -> None:
    port, handler = status_server
    handler.status = 500
    assert check(probe(port, "[234]??"), path)[0] != 0
    if shutil.which("bash", path=path):
        handler.status = 404
        assert check(probe(port, "[234]??"), path)[0] == 0


def test_nothing_listening_fails(path: str) -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    assert check(probe(port), path)[0] != 0


def test_a_server_that_never_answers_fails(path: str) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        # The probe gives up after its read timeout (the subprocess timeout would catch a hang).
        assert check(probe(silent.getsockname()[1]), path)[0] != 0

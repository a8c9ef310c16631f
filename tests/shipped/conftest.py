"""Fixtures the shipped-command tests share."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.shipped.checkout import Machine, make_origin
from tests.support import http_status
from tests.support.ci import unavailable


@pytest.fixture(params=["dash", "busybox"])
def shell(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """argv of the shell a container runs: dash (Debian-based images) or busybox ash with
    only its own applets (Alpine-based ones); `path_for` gives the PATH of its world."""
    name = str(request.param)
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (apt-get install -y {name}-static or dash)")
    if name == "dash":
        return [found]
    applets = tmp_path / "busybox-bin"
    applets.mkdir()
    listed = subprocess.run([found, "--list"], capture_output=True, text=True, check=True)
    for applet in listed.stdout.split():
        (applets / applet).symlink_to(found)
    return [str(applets / "sh")]


def path_for(shell: list[str]) -> str:
    """The PATH of `shell`'s world: busybox's applets alone, or the host's programs."""
    return str(Path(shell[0]).parent) if "busybox-bin" in shell[0] else "/usr/bin:/bin"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """The team's remote: one commit of the project's files."""
    return make_origin(tmp_path)


@pytest.fixture
def machine(origin: Path, tmp_path: Path) -> Machine:
    """One operator's clone of `origin`."""
    return Machine.clone(origin, tmp_path / "one")


@pytest.fixture
def status_server() -> Iterator[tuple[int, type[http_status.StatusHandler]]]:
    with http_status.status_server() as served:
        yield served

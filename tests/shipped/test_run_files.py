"""What a read-only container reads at start, as the stack ships it: the files step's shell
(components/files/write-files.sh) under dash and busybox, and the launcher's shared directory,
run by the real shells (the image's /bin/sh is dash on Debian-based images, busybox ash on
Alpine-based ones)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from components.container import WRITE_FILES_SCRIPT, files_stdin
from components.launcher import LAUNCHER_SOURCE, SHARED_DIR_ENV
from tests.shipped.conftest import path_for

TRICKY = "p@ss w0rd/$HOME'\"`x` \\n end\nsecond line\n\u00e9\u20ac"
REVISION = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def write(shell: list[str], directory: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shell, "-c", WRITE_FILES_SCRIPT, "write-files", str(directory)],
        input=stdin,
        capture_output=True,
        text=True,
        env={"PATH": path_for(shell)},
        timeout=60,
        check=False,
    )


def test_each_file_arrives_exactly_readable_by_all_and_writable_by_none(
    shell: list[str], tmp_path: Path
) -> None:
    files = {"DATABASE_URL": f"postgresql://astats:{TRICKY}@db/astats", "nginx.conf": TRICKY}
    volume = tmp_path / "volume"
    volume.mkdir()
    result = write(shell, volume, files_stdin(files))
    assert result.returncode == 0, result.stderr
    assert REVISION.match(result.stdout), result.stdout
    assert sorted(p.name for p in volume.iterdir()) == sorted(files)
    for name, content in files.items():
        assert (volume / name).read_text() == content
        assert stat.S_IMODE((volume / name).stat().st_mode) == 0o444


def test_a_new_run_replaces_contents_removes_what_is_gone_and_prints_a_new_revision(
    shell: list[str], tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    first = write(shell, volume, files_stdin({"PGPASSWORD": "old", "AWS_KEY": "k"}))
    second = write(shell, volume, files_stdin({"PGPASSWORD": "new"}))
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert first.stdout != second.stdout
    assert [p.name for p in volume.iterdir()] == ["PGPASSWORD"]
    assert (volume / "PGPASSWORD").read_text() == "new"


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "$HOME"])
def test_a_file_name_that_could_leave_the_directory_is_refused(
    shell: list[str], tmp_path: Path, name: str
) -> None:
    outside = tmp_path / "volume"
    target = outside / "files"
    target.mkdir(parents=True)
    result = write(shell, target, f"{name} eA==\n")
    assert result.returncode == 64
    assert "write-files: bad file name" in result.stderr
    assert list(outside.rglob("*")) == [target]


def launch(
    shell: list[str], tmp_path: Path, shared: Path, script: str
) -> subprocess.CompletedProcess[str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    return subprocess.run(
        [*shell, str(LAUNCHER_SOURCE), *shell, "-c", script],
        env={
            "PATH": path_for(shell),
            "ASTATS_SECRETS_DIR": str(secrets),
            SHARED_DIR_ENV: str(shared),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_shared_directory_and_what_the_service_writes_there_stay_group_writable(
    shell: list[str], tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    os.chmod(logs, 0o755)
    earlier = logs / "LATEST_LOG.txt"
    earlier.write_text("from the last start\n")
    os.chmod(earlier, 0o644)
    result = launch(shell, tmp_path, logs, f'echo new > "{logs}/other.log"')
    assert result.returncode == 0, result.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (logs, earlier, logs / "other.log")}
    assert modes == {"logs": 0o775, "LATEST_LOG.txt": 0o664, "other.log": 0o664}


def test_without_a_shared_directory_the_launcher_leaves_modes_alone(
    shell: list[str], tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    result = subprocess.run(
        [*shell, str(LAUNCHER_SOURCE), *shell, "-c", f'umask; echo x > "{tmp_path}/f"'],
        env={"PATH": path_for(shell), "ASTATS_SECRETS_DIR": str(secrets)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o666 & ~int(result.stdout, 8)

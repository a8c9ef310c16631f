"""The backend's log is rotated while the backend keeps appending to it."""

from __future__ import annotations

import gzip
import os
import pwd
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from astats_ops.logrotate import rotate_log
from tests.ops.helpers import run_cli
from tests.support.errors import assert_one_line_error

# Appends numbered lines until the stop file appears (or a cap is reached), then prints how
# many it wrote: the test decides when enough rotations happened, not the clock.
WRITER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
stop, cap, i = sys.argv[2], int(sys.argv[3]), 0
while i < cap and not (i % 50 == 0 and os.path.exists(stop)):
    os.write(fd, b"line %08d " % i + b"x" * 60 + b"\\n")
    i += 1
    if i % 50 == 0:
        time.sleep(0.0005)
print(i)
"""
LINE = re.compile(rb"line (\d{8}) x{60}")


def rotated_files(log: Path) -> list[Path]:
    """Rotated files, oldest first."""
    numbered = []
    for path in log.parent.iterdir():
        match = re.fullmatch(re.escape(log.name) + r"\.(\d+)(\.gz)?", path.name)
        if match:
            numbered.append((int(match[1]), path))
    return [path for _, path in sorted(numbered, reverse=True)]


def read_lines(path: Path) -> list[bytes]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends with a partial line"
    return data.splitlines()


def test_rotation_under_a_busy_writer_loses_only_the_truncate_window(tmp_path: Path) -> None:
    log = tmp_path / "LATEST_LOG.txt"
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log), str(stop), "10000000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    windows: list[float] = []
    try:
        while writer.poll() is None and len(windows) < 8:
            result = rotate_log(log, max_bytes=128 * 1024, keep=10_000)
            if result.rotated:
                windows.append(result.loss_window_seconds)
            time.sleep(0.002)
    finally:
        stop.touch()
        output, _ = writer.communicate(timeout=120)
    assert writer.returncode == 0
    total = int(output)

    seen: list[int] = []
    window_damaged: list[bytes] = []
    for path in [*rotated_files(log), log]:
        numbers = []
        for line in read_lines(path):
            match = LINE.fullmatch(line)
            if match is None and path == log and line.lstrip(b"\0") != line:
                window_damaged.append(line)
                continue
            assert match, f"corrupted line in {path.name}: {line[:80]!r}"
            numbers.append(int(match[1]))
        assert numbers == sorted(numbers), f"{path.name} out of order"
        seen.extend(numbers)

    assert seen == sorted(seen), "rotated files are not in order"
    assert len(seen) == len(set(seen)), "a line appears twice"
    lost = total - len(seen)
    rotations = len(windows)
    print(
        f"\n{rotations} rotations, {lost} of {total} lines lost "
        f"({len(window_damaged)} NUL-damaged in the live log), "
        f"truncate window max {max(windows) * 1e6:.0f} us"
    )
    assert rotations == 8
    # The writer appends bursts of lines microseconds apart, far faster than the backend
    # logs, so a few lines per rotation may fall in the window; more would be a real bug.
    assert lost <= 20 * rotations


def test_keep_limits_the_rotated_files_and_compresses_older_ones(tmp_path: Path) -> None:
    log = tmp_path / "LATEST_LOG.txt"
    for round_number in range(6):
        log.write_bytes(b"round %d\n" % round_number * 200)
        result = run_cli(
            "rotate-log", log, "--max-bytes", "1000", "--keep", "3", env=dict(os.environ)
        )
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "LATEST_LOG.txt",
        "LATEST_LOG.txt.1",
        "LATEST_LOG.txt.2.gz",
        "LATEST_LOG.txt.3.gz",
    ]
    assert log.read_bytes() == b""
    assert read_lines(tmp_path / "LATEST_LOG.txt.1")[0] == b"round 5"
    assert read_lines(tmp_path / "LATEST_LOG.txt.2.gz")[0] == b"round 4"
    assert read_lines(tmp_path / "LATEST_LOG.txt.3.gz")[0] == b"round 3"


def test_small_logs_are_left_alone_until_they_are_old(tmp_path: Path) -> None:
    log = tmp_path / "LATEST_LOG.txt"
    log.write_text("one line\n")
    assert not rotate_log(log, max_bytes=1000, keep=2).rotated
    assert rotate_log(log, max_bytes=1000, keep=2, max_age_hours=1).rotated
    log.write_text("next line\n")
    assert not rotate_log(log, max_bytes=1000, keep=2, max_age_hours=1).rotated
    later = time.time() + 2 * 3600
    assert rotate_log(log, max_bytes=1000, keep=2, max_age_hours=1, now=later).rotated
    assert read_lines(tmp_path / "LATEST_LOG.txt.1") == [b"next line"]


def test_missing_log_is_not_an_error(tmp_path: Path) -> None:
    result = rotate_log(tmp_path / "absent.txt", max_bytes=10, keep=2)
    assert not result.rotated


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a folder unwritable")
def test_unwritable_folder_is_one_clear_line(tmp_path: Path) -> None:
    from tests.ops.helpers import remount_read_only, tmpfs

    with tmpfs("1m") as volume:
        log = volume / "LATEST_LOG.txt"
        log.write_bytes(b"x" * 2000)
        remount_read_only(volume)
        result = run_cli("rotate-log", log, "--max-bytes", "1000", "--keep", "2", env=os.environ)
        assert_one_line_error(result, "rotating", "read-only file system")
        assert log.read_bytes() == b"x" * 2000


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can write files for another owner")
def test_rotated_files_keep_the_logs_owner_and_mode(tmp_path: Path) -> None:
    owner = pwd.getpwnam("postgres")
    log = tmp_path / "LATEST_LOG.txt"
    for _ in range(2):
        log.write_bytes(b"line\n" * 400)
        os.chown(log, owner.pw_uid, owner.pw_gid)
        log.chmod(0o640)
        assert rotate_log(log, max_bytes=1000, keep=3).rotated
    for name in ("LATEST_LOG.txt.1", "LATEST_LOG.txt.2.gz"):
        status = (tmp_path / name).stat()
        assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (
            owner.pw_uid,
            owner.pw_gid,
            0o640,
        ), name

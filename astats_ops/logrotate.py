"""``rotate-log``: rotate a log file that another process keeps open in append mode.

The writer (the backend) never reopens its log, so the file is copied and then truncated in
place (copytruncate): ``FILE`` -> ``FILE.1`` (plain), older ones ``FILE.2.gz`` ... ``FILE.N.gz``.

Loss window: what the writer appends after the copy's last read and before the truncate
is lost. The copy re-reads until it is at end of file AND at a line end (waiting up to a
second for a half-written line to complete), then truncates at once. The window is the time
from that last read to the end of ``ftruncate``: returned as ``loss_window_seconds``; the
tests measure well under a millisecond with 64-128 KiB logs. A line whose write() is in
flight at that instant can be lost and, because Linux extends a file page by page, the rest
of it can land past the new end of file, leaving NUL bytes at the start of the live log.
Rotated copies never contain NUL bytes (they are dropped while copying), and ``FILE.1``
always ends at a line end unless a line stayed unfinished for more than a second.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from astats_ops.errors import OpsError
from astats_ops.fsutil import fsync_dir

CHUNK = 1 << 20
LINE_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class RotationResult:
    rotated: bool
    copied_bytes: int = 0
    loss_window_seconds: float = 0.0
    reason: str = ""


def rotate_log(
    path: Path,
    *,
    max_bytes: int,
    keep: int,
    max_age_hours: float | None = None,
    now: float | None = None,
) -> RotationResult:
    """Rotate ``path`` if it is at least ``max_bytes`` long or older than ``max_age_hours``."""
    if keep < 1:
        raise OpsError("--keep must be at least 1")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return RotationResult(False, reason=f"{path} does not exist yet")
    reason = _reason(path, size, max_bytes, max_age_hours, time.time() if now is None else now)
    if not reason:
        return RotationResult(False, reason="below limits")
    try:
        _shift_older(path, keep)
        copied, window = _copy_truncate(path, _numbered(path, 1))
        fsync_dir(path.parent)
    except OSError as exc:
        raise OpsError(
            f"rotating {path} failed: {exc.strerror or exc} ({exc.filename or path}); "
            "check free space and permissions"
        ) from exc
    return RotationResult(True, copied, window, reason)


def _numbered(path: Path, index: int) -> Path:
    suffix = f".{index}" if index == 1 else f".{index}.gz"
    return path.with_name(path.name + suffix)


def _reason(path: Path, size: int, max_bytes: int, max_age_hours: float | None, now: float) -> str:
    if size == 0:
        return ""
    if size >= max_bytes:
        return f"size {size} >= {max_bytes} bytes"
    if max_age_hours is None:
        return ""
    previous = _numbered(path, 1)
    if not previous.exists():
        return "age limit set and no earlier rotation"
    age_hours = (now - previous.stat().st_mtime) / 3600
    if age_hours >= max_age_hours:
        return f"last rotation {age_hours:.1f} h ago >= {max_age_hours} h"
    return ""


def _shift_older(path: Path, keep: int) -> None:
    """Make room for a new ``FILE.1``: drop the oldest, shift, compress the old ``FILE.1``."""
    index = keep
    while index == keep or _numbered(path, index).exists():
        _numbered(path, index).unlink(missing_ok=True)
        index += 1
    for index in range(keep - 1, 1, -1):
        source = _numbered(path, index)
        if source.exists():
            os.replace(source, _numbered(path, index + 1))
    first = _numbered(path, 1)
    if first.exists():
        if keep >= 2:
            _compress(first, _numbered(path, 2))
        first.unlink()


@contextlib.contextmanager
def _partial_for(target: Path) -> Iterator[Path]:
    """A hidden path beside ``target`` to build it in; removed if the block fails."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        yield partial
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def _compress(source: Path, target: Path) -> None:
    with _partial_for(target) as partial:
        with source.open("rb") as raw, gzip.open(partial, "wb", compresslevel=6) as packed:
            shutil.copyfileobj(raw, packed, CHUNK)
        shutil.copystat(source, partial)
        _copy_owner_and_mode(source, partial)
        os.replace(partial, target)


def _copy_truncate(path: Path, target: Path) -> tuple[int, float]:
    with _partial_for(target) as partial:
        with path.open("r+b") as live, partial.open("wb") as copy:
            copied, last = _drain(live, copy, b"\n")
            copy.flush()
            os.fsync(copy.fileno())
            give_up = time.monotonic() + LINE_WAIT_SECONDS
            while True:
                more, last = _drain(live, copy, last)
                reached_eof = time.perf_counter()
                copied += more
                if last == b"\n" or time.monotonic() >= give_up:
                    os.ftruncate(live.fileno(), 0)
                    window = time.perf_counter() - reached_eof
                    break
                time.sleep(0.001)
            copy.flush()
            os.fsync(copy.fileno())
        _copy_owner_and_mode(path, partial)
        os.replace(partial, target)
    return copied, window


def _copy_owner_and_mode(source: Path, target: Path) -> None:
    """Rotated files keep the live log's mode and, when we run as root, its owner."""
    shutil.copymode(source, target)
    if os.geteuid() == 0:
        status = source.stat()
        os.chown(target, status.st_uid, status.st_gid)


def _drain(source: BinaryIO, sink: BinaryIO, last: bytes) -> tuple[int, bytes]:
    """Copy to end of file without NUL bytes; return bytes read and the last byte read."""
    copied = 0
    while chunk := source.read(CHUNK):
        sink.write(chunk.replace(b"\0", b""))
        copied += len(chunk)
        last = chunk[-1:]
    return copied, last

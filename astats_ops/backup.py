"""``backup``: a verified pg_dump custom-format archive that appears atomically.

The archive is written by ``pg_dump -Fc -f`` straight into a hidden ``.<name>.partial`` file
in the destination (a seekable file, so the archive records data offsets), synced, checked
with ``pg_restore --list``, hashed into ``<name>.sha256`` and only then renamed to its final
name. Any failure or interruption removes what this run created and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from astats_ops.catalog import backup_name, checksum_line, checksum_path, sha256_of
from astats_ops.errors import OpsError
from astats_ops.fsutil import fsync_dir, fsync_file
from astats_ops.pgenv import PgTarget, connection_hint, find_tool
from astats_ops.proc import run_tool


def create_backup(
    dest: Path, *, env: Mapping[str, str] | None = None, now: datetime | None = None
) -> Path:
    """Dump the database named by the libpq environment into ``dest``; return the new file."""
    env = dict(os.environ if env is None else env)
    target = PgTarget.from_env(env)
    pg_dump = find_tool("pg_dump", env)
    pg_restore = find_tool("pg_restore", env)
    _check_destination(dest)
    final = _free_name(dest, target.database, now)
    sidecar = checksum_path(final)
    partial = dest / f".{final.name}.partial"
    sidecar_partial = dest / f".{sidecar.name}.partial"
    created: list[Path] = []
    try:
        _create_exclusive(partial, dest)
        created.append(partial)
        dumped = run_tool([pg_dump, "--format=custom", f"--file={partial}"], env)
        if not dumped.ok:
            text = dumped.error_text("pg_dump")
            raise OpsError(
                f"pg_dump of {target.describe()} failed: {text}; {_dump_hint(text, dest)}"
            )
        fsync_file(partial)
        listed = run_tool([pg_restore, "--list", str(partial)], env)
        if not listed.ok:
            raise OpsError(
                f"verification of the new archive failed (pg_restore --list): "
                f"{listed.error_text('pg_restore')}; check free space and the disk in {dest}"
            )
        _create_exclusive(sidecar_partial, dest)
        created.append(sidecar_partial)
        sidecar_partial.write_text(checksum_line(sha256_of(partial), final.name), "ascii")
        fsync_file(sidecar_partial)
        os.rename(sidecar_partial, sidecar)
        created[-1] = sidecar
        os.rename(partial, final)
        created.clear()
        fsync_dir(dest)
        return final
    except OSError as exc:
        raise OpsError(
            f"writing the backup to {dest} failed: {exc.strerror or exc} "
            f"({exc.filename or dest}); check free space and permissions in {dest}"
        ) from exc
    finally:
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()


def _free_name(dest: Path, database: str, now: datetime | None) -> Path:
    """The final path for a backup taken now; names have one-second resolution, so a backup
    started in the same second as the previous one waits for the next second."""
    for _ in range(3):
        final = dest / backup_name(database, now or datetime.now(UTC))
        if not final.exists() and not checksum_path(final).exists():
            return final
        if now is not None:
            break
        time.sleep(1.0 - datetime.now(UTC).microsecond / 1e6)
    raise OpsError(f"{final} already exists; wait a second and run the backup again")


def _check_destination(dest: Path) -> None:
    if not dest.exists():
        raise OpsError(f"backup directory {dest} does not exist; create it or check --dest")
    if not dest.is_dir():
        raise OpsError(f"{dest} is not a directory; check --dest")


def _create_exclusive(path: Path, dest: Path) -> None:
    """Create ``path`` (mode 0600); when running as root, owned by the folder's owner, so
    the image's unprivileged user can still list, upload and restore what root wrote."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OpsError(
            f"cannot write to backup directory {dest}: {exc.strerror}; check that it is "
            "mounted read-write, writable by this user and not full"
        ) from exc
    try:
        if os.geteuid() == 0:
            folder = os.stat(dest)
            os.fchown(fd, folder.st_uid, folder.st_gid)
    finally:
        os.close(fd)


def _dump_hint(error_text: str, dest: Path) -> str:
    lowered = error_text.lower()
    if "no space left" in lowered or "file too large" in lowered or "sigxfsz" in lowered:
        return f"check free space in {dest}"
    if "output file" in lowered:
        return f"check that {dest} is writable and not full"
    return connection_hint(error_text)

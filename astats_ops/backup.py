"""``backup``: a verified pg_dump custom-format archive that appears atomically.

A psql session exports a snapshot; ``pg_dump -Fc --snapshot`` streams the archive from it
through this process, which writes it to a hidden ``.<name>.partial`` file in the destination
and hashes it on the way (no second read). Meanwhile the session counts every table's rows in
the same snapshot. The file is then synced, checked with ``pg_restore --list``, and given its
``<name>.sha256`` and ``<name>.counts.json`` (the counts the restore drill compares against)
before it is renamed to its final name. Any failure or interruption removes what this run
created and nothing else.

Streamed, the archive records no data offsets; ``pg_restore --jobs`` still restores it in
parallel (see :mod:`astats_ops.archive`), so nothing is lost. The compression level is a
deliberate choice: zlib level 1 costs pg_dump a fraction of the default level's CPU for a dump a
few per cent larger.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from astats_ops.catalog import (
    backup_name,
    checksum_line,
    checksum_path,
    counts_path,
)
from astats_ops.errors import OpsError
from astats_ops.fsutil import fsync_dir
from astats_ops.pgenv import PgTarget, connection_hint, find_tool
from astats_ops.proc import PIPE, check_cancelled, run_tool, spawn
from astats_ops.snapshot import Background, TableRows, count_rows, export_snapshot, psql_session

DEFAULT_COMPRESSION = 1
CHUNK = 1 << 20


def create_backup(
    dest: Path,
    *,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
    compression: int = DEFAULT_COMPRESSION,
) -> Path:
    """Dump the database named by the libpq environment into ``dest``; return the new file."""
    env = dict(os.environ if env is None else env)
    target = PgTarget.from_env(env)
    pg_dump = find_tool("pg_dump", env)
    pg_restore = find_tool("pg_restore", env)
    psql = find_tool("psql", env)
    _check_destination(dest)
    final, partial = _claim_name(dest, target.database, now)
    created: list[Path] = [partial]
    try:
        dump = [pg_dump, "--format=custom", f"--compress={compression}"]
        digest, tables = _dump(dump, psql, partial, target, env, dest)
        listed = run_tool([pg_restore, "--list", str(partial)], env)
        if not listed.ok:
            raise OpsError(
                f"verification of the new archive failed (pg_restore --list): "
                f"{listed.error_text('pg_restore')}; check free space and the disk in {dest}"
            )
        counts = {"version": 1, "dump": final.name, "sha256": digest}
        counts["tables"] = [vars(table) for table in tables]
        for path, text in (
            (counts_path(final), json.dumps(counts, indent=1) + "\n"),
            (checksum_path(final), checksum_line(digest, final.name)),
        ):
            _publish(path, text, dest, created)
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


def _dump(
    dump: list[str],
    psql: str,
    partial: Path,
    target: PgTarget,
    env: Mapping[str, str],
    dest: Path,
) -> tuple[str, list[TableRows]]:
    """Stream pg_dump into ``partial`` while the snapshot's rows are counted; return the
    archive's sha256 and the counts."""
    # Errors must not end this session: its transaction holds the snapshot pg_dump imports.
    with psql_session(psql, env, target.database, stop_on_error=False) as session:
        snapshot = export_snapshot(session)
        if snapshot is None:
            check_cancelled()
            text = session.error_text()
            raise OpsError(
                f"pg_dump of {target.describe()} failed: {text}; {connection_hint(text)}"
            )
        counting = Background(lambda: count_rows(session))
        with spawn([*dump, f"--snapshot={snapshot}"], env, stdout=PIPE) as tool:
            assert tool.proc.stdout is not None
            digest, write_error = _write_hashing(tool.proc.stdout, partial)
            if write_error is not None:
                tool.proc.kill()
            dumped = tool.result()
        check_cancelled()
        if write_error is not None:
            raise OpsError(
                f"pg_dump of {target.describe()} failed: writing {partial.name}: "
                f"{write_error.strerror or write_error}; {_dump_hint(str(write_error), dest)}"
            )
        if not dumped.ok:
            text = dumped.error_text("pg_dump")
            raise OpsError(
                f"pg_dump of {target.describe()} failed: {text}; {_dump_hint(text, dest)}"
            )
        try:
            tables = counting.result()
        except OpsError as exc:
            raise OpsError(f"backup of {target.describe()}: {exc}") from exc
    return digest, tables


def _write_hashing(source: IO[bytes], partial: Path) -> tuple[str, OSError | None]:
    """Copy ``source`` into ``partial`` (synced), hashing as it goes; a write error is
    returned, not raised, so the caller can stop pg_dump first."""
    digest = hashlib.sha256()
    try:
        with partial.open("r+b") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        return "", exc
    return digest.hexdigest(), None


def _publish(path: Path, text: str, dest: Path, created: list[Path]) -> None:
    """Write a sidecar durably under a hidden name, then give it its final name."""
    partial = dest / f".{path.name}.partial"
    _create_exclusive(partial, dest)
    created.append(partial)
    with partial.open("r+b") as out:
        out.write(text.encode())
        out.flush()
        os.fsync(out.fileno())
    os.rename(partial, path)
    created[-1] = path


def _claim_name(dest: Path, database: str, now: datetime | None) -> tuple[Path, Path]:
    """The final path for a backup taken now, and its ``.partial`` file, created: names have
    one-second resolution, so a backup started in the same second as another (finished, or
    still running in another process: the scheduler's first run beside a rollout's
    pre-migration backup) waits for the next second."""
    for _ in range(5):
        final = dest / backup_name(database, now or datetime.now(UTC))
        partial = dest / f".{final.name}.partial"
        taken = any(p.exists() for p in (final, checksum_path(final), counts_path(final)))
        if not taken:
            try:
                _create_exclusive(partial, dest)
                return final, partial
            except FileExistsError:
                pass
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
    except FileExistsError:
        raise
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

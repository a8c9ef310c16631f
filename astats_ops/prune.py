"""``prune``: delete local backups the retention policy does not keep (dump + sidecars).

It also removes ``.partial`` files left by a backup that was killed (SIGKILL, power loss)
once they are a day old: a running backup keeps writing to its partial file, so a day
without a change means nobody owns it any more.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from astats_ops.catalog import BackupFile, counts_path, scan
from astats_ops.errors import OpsError
from astats_ops.fsutil import fsync_dir
from astats_ops.retention import Plan, Policy, Snapshot, plan

STALE_PARTIAL_SECONDS = 24 * 3600
_PARTIAL = re.compile(r"^\..+-\d{8}T\d{6}Z\.dump(\.sha256|\.counts\.json)?\.partial$")


@dataclass(frozen=True)
class PruneResult:
    deleted: list[BackupFile]
    stale_partials: list[Path]


def local_plan(backups: list[BackupFile], policy: Policy) -> tuple[Plan, dict[str, BackupFile]]:
    by_name = {backup.name: backup for backup in backups}
    snapshots = [Snapshot(b.name, b.created, b.verified) for b in backups]
    return plan(snapshots, policy), by_name


def stale_partials(dest: Path, now: float | None = None) -> list[Path]:
    cutoff = (time.time() if now is None else now) - STALE_PARTIAL_SECONDS
    found = []
    for entry in os.scandir(dest):
        if (
            _PARTIAL.match(entry.name)
            and entry.is_file(follow_symlinks=False)
            and entry.stat(follow_symlinks=False).st_mtime < cutoff
        ):
            found.append(Path(entry.path))
    return sorted(found)


def prune_local(dest: Path, policy: Policy, *, dry_run: bool = False) -> PruneResult:
    """Apply ``policy`` to ``dest``; report the backups deleted (or that would be)."""
    decided, by_name = local_plan(scan(dest), policy)
    result = PruneResult(
        deleted=[by_name[snapshot.key] for snapshot in decided.delete],
        stale_partials=stale_partials(dest),
    )
    if dry_run:
        return result
    try:
        for backup in result.deleted:
            with contextlib.suppress(FileNotFoundError):
                backup.path.unlink()
            for sidecar in (backup.checksum_path, counts_path(backup.path)):
                with contextlib.suppress(FileNotFoundError):
                    sidecar.unlink()
        for partial in result.stale_partials:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
    except OSError as exc:
        raise OpsError(
            f"deleting {exc.filename} failed: {exc.strerror}; check permissions in {dest}"
        ) from exc
    if result.deleted or result.stale_partials:
        fsync_dir(dest)
    return result

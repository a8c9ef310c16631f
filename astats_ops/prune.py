"""``prune``: delete local backups the retention policy does not keep (dump + sidecar)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from astats_ops.catalog import BackupFile, scan
from astats_ops.errors import OpsError
from astats_ops.fsutil import fsync_dir
from astats_ops.retention import Plan, Policy, Snapshot, plan


def local_plan(backups: list[BackupFile], policy: Policy) -> tuple[Plan, dict[str, BackupFile]]:
    by_name = {backup.name: backup for backup in backups}
    snapshots = [Snapshot(b.name, b.created, b.verified) for b in backups]
    return plan(snapshots, policy), by_name


def prune_local(dest: Path, policy: Policy, *, dry_run: bool = False) -> list[BackupFile]:
    """Apply ``policy`` to ``dest``; return the backups deleted (or that would be)."""
    decided, by_name = local_plan(scan(dest), policy)
    doomed = [by_name[snapshot.key] for snapshot in decided.delete]
    if dry_run:
        return doomed
    for backup in doomed:
        try:
            backup.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OpsError(
                f"deleting {backup.path} failed: {exc.strerror}; check permissions in {dest}"
            ) from exc
        with contextlib.suppress(FileNotFoundError):
            backup.checksum_path.unlink()
    if doomed:
        fsync_dir(dest)
    return doomed

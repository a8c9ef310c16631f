"""Backup files in a directory: naming, checksums and listing.

A backup is ``<dbname>-<YYYYmmddTHHMMSSZ>.dump`` (pg_dump custom format) with a sidecar
``<name>.sha256`` in ``sha256sum`` format; only a backup whose sidecar matches is *verified*.
``<name>.counts.json`` holds the row counts taken in the dump's snapshot (backups made before
it existed have none).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from astats_ops.errors import OpsError
from astats_ops.snapshot import TableRows, parse_table_rows

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
DUMP_SUFFIX = ".dump"
CHECKSUM_SUFFIX = ".sha256"
COUNTS_SUFFIX = ".counts.json"
_NAME = re.compile(r"^(?P<database>.+)-(?P<stamp>\d{8}T\d{6}Z)\.dump$")


class Verification(StrEnum):
    OK = "ok"
    MISSING = "checksum-missing"
    MISMATCH = "checksum-mismatch"
    UNREADABLE = "unreadable"
    UNCHECKED = "unchecked"


@dataclass(frozen=True)
class BackupFile:
    path: Path
    database: str
    created: datetime
    size: int
    verification: Verification

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def verified(self) -> bool:
        return self.verification is Verification.OK

    @property
    def checksum_path(self) -> Path:
        return checksum_path(self.path)


def backup_name(database: str, created: datetime) -> str:
    return f"{database}-{created.astimezone(UTC).strftime(TIMESTAMP_FORMAT)}{DUMP_SUFFIX}"


def parse_backup_name(name: str) -> tuple[str, datetime] | None:
    """``(database, created)`` for a backup file name, or None for anything else."""
    match = _NAME.match(name)
    if match is None:
        return None
    try:
        created = datetime.strptime(match["stamp"], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return match["database"], created


def checksum_path(dump: Path) -> Path:
    return dump.with_name(dump.name + CHECKSUM_SUFFIX)


def counts_path(dump: Path) -> Path:
    return dump.with_name(dump.name + COUNTS_SUFFIX)


def recorded_counts(dump: Path) -> dict[int, TableRows]:
    """The row counts taken in the dump's snapshot, by table oid; none for an older backup."""
    try:
        recorded = json.loads(counts_path(dump).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise OpsError(f"unreadable row counts {counts_path(dump).name}: {exc}") from exc
    tables = parse_table_rows(json.dumps(recorded.get("tables", [])))
    return {table.oid: table for table in tables}


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def checksum_line(digest: str, name: str) -> str:
    return f"{digest}  {name}\n"


def read_checksum(dump: Path) -> str | None:
    """The hex digest recorded in the sidecar, or None when there is no usable sidecar."""
    try:
        text = checksum_path(dump).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[1].lstrip("*") != dump.name:
        return None
    digest = fields[0].lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        return None
    return digest


def verify(dump: Path) -> Verification:
    expected = read_checksum(dump)
    if expected is None:
        return Verification.MISSING
    try:
        actual = sha256_of(dump)
    except OSError:
        return Verification.UNREADABLE
    return Verification.OK if actual == expected else Verification.MISMATCH


def scan(dest: Path, *, check: bool = True) -> list[BackupFile]:
    """Backups in ``dest``, oldest first; ``check`` hashes each one against its sidecar."""
    try:
        entries = list(os.scandir(dest))
    except FileNotFoundError as exc:
        raise OpsError(f"backup directory {dest} does not exist; check --dest") from exc
    except NotADirectoryError as exc:
        raise OpsError(f"{dest} is not a directory; check --dest") from exc
    except PermissionError as exc:
        raise OpsError(f"cannot read backup directory {dest}: permission denied") from exc
    backups = []
    for entry in entries:
        parsed = parse_backup_name(entry.name)
        if parsed is None or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        backups.append(
            BackupFile(
                path=path,
                database=parsed[0],
                created=parsed[1],
                size=entry.stat(follow_symlinks=False).st_size,
                verification=verify(path) if check else Verification.UNCHECKED,
            )
        )
    backups.sort(key=lambda backup: (backup.created, backup.name))
    return backups

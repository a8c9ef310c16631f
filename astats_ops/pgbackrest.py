"""Running ``pgbackrest`` and reading its repository's ``info``.

pgBackRest takes its whole configuration from the ``PGBACKREST_*`` environment the container
carries (components/pitr.py); nothing here adds options that the environment already sets. A
failure becomes one line that names the command and keeps pgBackRest's own
``ERROR: [NNN]: ...`` words, which is what its documentation and issue tracker are searched by.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from astats_ops.errors import OpsError, one_line
from astats_ops.proc import PIPE, check_cancelled, spawn

_ERROR_LINE = re.compile(r"^(?:ERROR|ASSERT): \[\d{3}\]: ")


class PgBackRestError(OpsError):
    """A pgbackrest command failed; ``code`` is pgBackRest's error code when it printed one."""

    def __init__(self, command: str, stderr: str, returncode: int) -> None:
        self.code = returncode
        super().__init__(f"pgbackrest {command} failed: {error_words(stderr, returncode)}")


def error_words(stderr: str, returncode: int) -> str:
    """pgBackRest's ``ERROR: [NNN]: ...`` message (with its continuation lines) as one line;
    the whole stderr, or the exit code, when it printed no such message."""
    lines = stderr.splitlines()
    for index, line in enumerate(lines):
        if _ERROR_LINE.match(line):
            message = [line]
            message += [more for more in lines[index + 1 :] if more.startswith((" ", "\t"))]
            return one_line("\n".join(message))
    return one_line(stderr) or f"exit code {returncode} and no error output"


def find_pgbackrest(env: Mapping[str, str]) -> str:
    found = shutil.which("pgbackrest", path=env.get("PATH", os.defpath))
    if found is None:
        raise OpsError("pgbackrest not found on PATH; the backup image installs pgBackRest 2.45")
    return found


def run_pgbackrest(args: Sequence[str], env: Mapping[str, str]) -> str:
    """Run ``pgbackrest <args>`` to completion and return its stdout; killed on a stop request."""
    command = [find_pgbackrest(env), *args]
    with spawn(command, env, stdout=PIPE) as tool:
        assert tool.proc.stdout is not None
        output = tool.proc.stdout.read().decode(errors="replace")
        result = tool.result()
    check_cancelled()
    if not result.ok:
        raise PgBackRestError(" ".join(args), result.stderr, result.returncode)
    return output


@dataclass(frozen=True)
class PhysicalBackup:
    label: str
    type: str
    started_at: datetime
    stopped_at: datetime
    size_bytes: int
    repo_bytes: int
    """What this backup added to the repository (a diff refers to its full for the rest)."""
    wal_start: str | None
    wal_stop: str | None

    def as_status(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "type": self.type,
            "started_at": isoformat(self.started_at),
            "stopped_at": isoformat(self.stopped_at),
            "size_bytes": self.size_bytes,
            "repo_bytes": self.repo_bytes,
        }


@dataclass(frozen=True)
class StanzaInfo:
    name: str
    status_code: int
    status_message: str
    backups: tuple[PhysicalBackup, ...]
    """Oldest first."""
    archive_min: str | None
    archive_max: str | None

    @property
    def newest(self) -> PhysicalBackup | None:
        return self.backups[-1] if self.backups else None

    @property
    def earliest_target(self) -> datetime | None:
        """The earliest moment a restore reaches: the end of the oldest backup (a backup is
        consistent only from its end)."""
        return min((b.stopped_at for b in self.backups), default=None)

    def newest_of(self, kind: str) -> PhysicalBackup | None:
        return next((b for b in reversed(self.backups) if b.type == kind), None)


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def read_info(env: Mapping[str, str]) -> StanzaInfo:
    """``pgbackrest info`` for the stanza the environment names."""
    return parse_info(run_pgbackrest(["info", "--output=json"], env))


def parse_info(text: str) -> StanzaInfo:
    try:
        stanzas = json.loads(text)
        stanza = stanzas[0]
        backups = tuple(
            sorted(
                (_backup(row) for row in stanza.get("backup", []) if not row.get("error")),
                key=lambda b: (b.started_at, b.label),
            )
        )
        archives = stanza.get("archive", [])
        mins = [a["min"] for a in archives if a.get("min")]
        maxes = [a["max"] for a in archives if a.get("max")]
        return StanzaInfo(
            name=str(stanza["name"]),
            status_code=int(stanza["status"]["code"]),
            status_message=str(stanza["status"]["message"]),
            backups=backups,
            archive_min=min(mins) if mins else None,
            archive_max=max(maxes) if maxes else None,
        )
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        raise OpsError(
            f"pgbackrest info printed something unexpected ({type(exc).__name__}: {exc}); "
            "is it pgBackRest 2.45?"
        ) from exc


def _backup(row: Mapping[str, Any]) -> PhysicalBackup:
    archive = row.get("archive") or {}
    return PhysicalBackup(
        label=str(row["label"]),
        type=str(row["type"]),
        started_at=datetime.fromtimestamp(int(row["timestamp"]["start"]), UTC),
        stopped_at=datetime.fromtimestamp(int(row["timestamp"]["stop"]), UTC),
        size_bytes=int(row["info"]["size"]),
        repo_bytes=int(row["info"]["repository"]["delta"]),
        wal_start=archive.get("start"),
        wal_stop=archive.get("stop"),
    )

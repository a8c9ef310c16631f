"""``astats status`` on a real engine reads the ``pitr`` block from the scheduler's status file in
the backups volume: a healthy archive is shown and needs nothing, a failing one is named with
pgBackRest's reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from docker.models.containers import Container

from astats_console.backups import STATUS_FILE
from tests.console.conftest import Images
from tests.console.helpers import astats
from tests.console.ministack import MiniStack

SEGMENT = "00000001000000000000002A"
LABEL = "20261124-060000F"
REASON = "[082]: unable to push WAL file '00000001000000000000002B' to the archive asynchronously"
PITR_PREFIXES = ("WAL archiving", "pg_wal", "physical")


def pitr_block(now: datetime, *, failing: bool) -> dict[str, Any]:
    def ago(seconds: float) -> str:
        return (now - timedelta(seconds=seconds)).isoformat()

    return {
        "checked_at": ago(5),
        "archive_timeout_s": 60,
        "archive": {
            "last_archived_wal": SEGMENT,
            "last_archived_at": ago(30),
            "last_failed_wal": "00000001000000000000002B" if failing else None,
            "last_failed_at": ago(10) if failing else None,
            "pending_segments": 1 if failing else 0,
            "oldest_pending_age_s": 20.0 if failing else None,
            "pg_wal_bytes": 48 * 1024**2,
            "repo_free_bytes": None,
            "failing": failing,
            "lagging": False,
            "reason": REASON if failing else None,
        },
        "newest_backup": {
            "label": LABEL,
            "type": "full",
            "started_at": ago(3600),
            "stopped_at": ago(3500),
            "size_bytes": 30 * 1024**2,
            "repo_bytes": 4 * 1024**2,
        },
        "oldest_backup_at": ago(3600),
        "backups": 1,
        "repo_bytes": 4 * 1024**2,
        "last_backup_run": None,
        "last_drill": None,
    }


def write_pitr(stack: MiniStack, scheduler: Container, *, failing: bool) -> None:
    """The scheduler's own status file with a pitr block added, as an archiving scheduler keeps
    it (the scheduler here archives nothing and sleeps until its next run)."""
    status = json.loads(scheduler.exec_run(["cat", STATUS_FILE]).output)
    status["pitr"] = pitr_block(datetime.now(UTC), failing=failing)
    stack.upload(scheduler, {STATUS_FILE: (json.dumps(status), 0o644)})


def pitr_attention(stdout: str) -> list[str]:
    return [
        line.removeprefix("ATTENTION ")
        for line in stdout.splitlines()
        if line.startswith("ATTENTION ") and line[10:].startswith(PITR_PREFIXES)
    ]


def test_status_shows_archiving_from_the_scheduler_status_file(
    ministack: MiniStack, console_images: Images
) -> None:
    db = ministack.database(console_images.postgres)
    ministack.wait_for(db, "healthy")
    scheduler = ministack.scheduler(console_images.backup)
    ministack.wait_for(scheduler, "healthy")
    before = astats(ministack.name, "status")
    assert not any(line.startswith("WAL archive") for line in before.stdout.splitlines())

    write_pitr(ministack, scheduler, failing=False)
    healthy = astats(ministack.name, "status")
    lines = healthy.stdout.splitlines()
    assert any(line.startswith(f"WAL archive: last segment {SEGMENT} archived ") for line in lines)
    assert any(line.startswith(f"physical backups: newest {LABEL} (full, ") for line in lines)
    assert "last physical drill: none yet" in lines
    assert pitr_attention(healthy.stdout) == [], healthy.stdout

    write_pitr(ministack, scheduler, failing=True)
    failing = astats(ministack.name, "status")
    assert failing.returncode == 1, failing.stderr
    [line] = pitr_attention(failing.stdout)
    assert line.startswith(f"WAL archiving failing: {REASON} (last segment archived ")
    report = json.loads(astats(ministack.name, "status", "--json").stdout)
    assert report["backups"]["pitr"]["archive"]["reason"] == REASON
    [reason] = [r for r in report["reasons"] if r.startswith(PITR_PREFIXES)]
    assert reason.startswith(f"WAL archiving failing: {REASON} (last segment archived ")

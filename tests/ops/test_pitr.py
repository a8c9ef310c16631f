"""WAL archiving with the real pgBackRest: the stanza on the first push, the physical backups'
cadence and retention, and an archive status that says what is wrong in pgBackRest's words."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from astats_ops.pgbackrest import PhysicalBackup, StanzaInfo, parse_info, read_info
from astats_ops.pitr import PitrSettings, archive_problems, archive_status, due_backup
from tests.ops.pitr_support import Archiving, archiving_cluster, run_ops


@pytest.fixture
def archiving() -> Iterator[Archiving]:
    with archiving_cluster() as cluster:
        yield cluster


def test_the_first_push_creates_the_stanza(archiving: Archiving) -> None:
    assert not (archiving.repo / "archive").exists()

    segment = archiving.switch_wal()
    archiving.wait_archived(segment)

    info = read_info(archiving.env())
    assert info.name == "astats"
    assert info.backups == ()
    assert info.archive_max is not None and info.archive_max >= segment


def test_archive_status_healthy(archiving: Archiving) -> None:
    archiving.wait_archived(archiving.switch_wal())

    status = archive_status(archiving.env(), 60)

    assert not status.failing and not status.lagging and status.reason is None
    assert status.pending_segments == 0 and status.oldest_pending_age_s is None
    assert status.last_archived_wal is not None and status.last_archived_at is not None
    assert status.pg_wal_bytes >= 16 * 1024 * 1024
    assert status.repo_free_bytes is not None and status.repo_free_bytes > 0
    assert archive_problems(status, 60) == []


def test_an_unwritable_repository_fails_archiving_with_pgbackrests_reason(
    archiving: Archiving,
) -> None:
    archiving.wait_archived(archiving.switch_wal())
    archiving.block_repo()

    archiving.switch_wal()
    archiving.wait_failed()
    env = archiving.env()
    status = archive_status(env, 60)

    assert status.failing and status.pending_segments >= 1
    assert status.reason is not None and status.reason.startswith("ERROR: [")
    assert "Permission denied" in status.reason and "\n" not in status.reason
    problems = archive_problems(status, 60)
    assert [p.kind for p in problems] == ["archive-failing"]
    assert problems[0].text == f"archiving failing: {status.reason}"

    shown = run_ops("pitr-status", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    block = json.loads(shown.stdout)
    assert block["archive"]["failing"] is True
    assert block["archive"]["reason"] == status.reason
    assert block["problems"] == [problems[0].text]
    human = run_ops("pitr-status", env=env)
    assert human.returncode == 1 and "problem: archiving failing: ERROR: [" in human.stdout


def test_waiting_wal_lags_and_fills_pg_wal(archiving: Archiving) -> None:
    archiving.wait_archived(archiving.switch_wal())
    archiving.block_repo()
    for _ in range(3):
        archiving.switch_wal()
    archiving.wait_failed()
    env = archiving.env()

    now = archive_status(env, 60)
    later = archive_status(env, 60, now=datetime.now(UTC) + timedelta(minutes=5))

    assert not now.lagging
    assert now.pending_segments >= 3 and now.pending_bytes >= 3 * 16 * 1024 * 1024
    assert now.max_wal_bytes == 32 * 1024 * 1024
    assert later.lagging and later.oldest_pending_age_s is not None
    assert later.oldest_pending_age_s >= 300
    kinds = [p.kind for p in archive_problems(later, 60)]
    assert kinds == ["archive-failing", "archive-lagging", "pg-wal-full"]
    texts = [p.text for p in archive_problems(later, 60)]
    assert texts[1].startswith("archiving lags: oldest WAL waiting ")
    assert texts[2].startswith("pg_wal holds ") and "waiting for the archive" in texts[2]

    archiving.block_repo(False)
    archiving.wait_archived(archiving.switch_wal(), timeout=120)
    healed = archive_status(env, 60)
    assert not healed.failing and healed.pending_segments == 0 and healed.reason is None


def test_full_then_diff_then_full_and_retention_expires_the_oldest_full(
    archiving: Archiving,
) -> None:
    archiving.wait_archived(archiving.switch_wal())
    env = archiving.env()
    common = archiving.schedule_args("--once", "--pitr-drill-every-hours", "1000")

    def run(full_hours: str, diff_hours: str) -> dict[str, object]:
        result = run_ops(
            *common,
            "--pitr-full-every-hours",
            full_hours,
            "--pitr-diff-every-hours",
            diff_hours,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        block: dict[str, object] = json.loads(archiving.status_file.read_text())["pitr"]
        return block

    first = run("168", "24")
    assert first["last_backup_run"]["type"] == "full"  # type: ignore[index]
    assert first["last_drill"]["ok"], first["last_drill"]  # type: ignore[index]
    assert first["newest_backup"]["type"] == "full"  # type: ignore[index]
    assert first["backups"] == 1

    not_due = run("168", "24")
    assert not_due["backups"] == 1
    assert json.loads(archiving.status_file.read_text())["steps"]["pitr-backup"].startswith(
        "not due"
    )

    diff = run("168", "0.0001")
    assert diff["newest_backup"]["type"] == "diff"  # type: ignore[index]
    assert diff["backups"] == 2

    full_again = run("0.0001", "24")
    assert full_again["newest_backup"]["type"] == "full"  # type: ignore[index]
    third = run("0.0001", "24")

    fulls = [b for b in read_info(env).backups if b.type == "full"]
    assert len(fulls) == 2, "repo1-retention-full=2 expired the oldest full and its diff"
    assert [b.type for b in read_info(env).backups] == ["full", "full"]
    assert third["oldest_backup_at"] == fulls[0].as_status()["stopped_at"]
    assert third["repo_bytes"] > 0  # type: ignore[operator]
    assert third["archive"]["failing"] is False  # type: ignore[index]
    assert third["error"] is None


def backup(label: str, kind: str, started: datetime) -> PhysicalBackup:
    return PhysicalBackup(label, kind, started, started + timedelta(minutes=1), 1, 1, None, None)


def test_the_cadence_is_a_full_then_diffs_then_the_next_full() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    settings = PitrSettings(full_every_hours=168, diff_every_hours=24)

    def due(*backups: PhysicalBackup, at: timedelta) -> str | None:
        info = StanzaInfo("astats", 0, "ok", backups, None, None)
        return due_backup(info, t0 + at, settings)[0]

    full = backup("F", "full", t0)
    assert due(at=timedelta()) == "full"
    assert due(full, at=timedelta(hours=23)) is None
    assert due(full, at=timedelta(hours=24)) == "diff"
    diff = backup("F_D", "diff", t0 + timedelta(hours=24))
    assert due(full, diff, at=timedelta(hours=47)) is None
    assert due(full, diff, at=timedelta(hours=48)) == "diff"
    assert due(full, diff, at=timedelta(hours=168)) == "full"
    assert due(backup("D", "diff", t0), at=timedelta(hours=1)) == "full", "no full yet"


def test_info_parses_pgbackrests_json() -> None:
    text = json.dumps(
        [
            {
                "name": "astats",
                "status": {"code": 0, "message": "ok"},
                "archive": [{"min": "000000010000000000000003", "max": "00000001000000000000000A"}],
                "backup": [
                    {
                        "label": "20260101-000000F",
                        "type": "full",
                        "timestamp": {"start": 1767225600, "stop": 1767225660},
                        "info": {"size": 100, "repository": {"delta": 40, "size": 40}},
                        "archive": {"start": "000000010000000000000003", "stop": "x"},
                        "error": False,
                    }
                ],
            }
        ]
    )
    info = parse_info(text)
    assert info.newest is not None and info.newest.as_status() == {
        "label": "20260101-000000F",
        "type": "full",
        "started_at": "2026-01-01T00:00:00+00:00",
        "stopped_at": "2026-01-01T00:01:00+00:00",
        "size_bytes": 100,
        "repo_bytes": 40,
    }
    assert (info.archive_min, info.archive_max) == (
        "000000010000000000000003",
        "00000001000000000000000A",
    )


def test_no_pgbackrest_is_one_line(tmp_path: object) -> None:
    from astats_ops.errors import OpsError

    with pytest.raises(OpsError, match="pgbackrest not found on PATH"):
        read_info({"PATH": os.devnull})

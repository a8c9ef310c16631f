"""Backups as ``astats_ops list --json`` and the status file tell them, read tolerantly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from astats_console import backups
from astats_console.backups import (
    BackupEntry,
    backup_facts_from,
    interval_from_command,
    parse_listing,
)
from astats_console.errors import ConsoleError
from astats_console.restore import RestoreRequest, choose
from components import backup as backup_component
from components import launcher

LISTING = [
    {
        "name": "astats-20261124T120000Z.dump",
        "path": "/backups/astats-20261124T120000Z.dump",
        "database": "astats",
        "created": "2026-11-24T12:00:00+00:00",
        "age_seconds": 60,
        "size": 2048,
        "verification": "ok",
        "drill": {"ok": True, "summary": "drill ok, restore 3.1 s", "new_field": 1},
        "a_field_added_later": [1, 2],
    },
    {
        "name": "astats-20261124T060000Z.dump",
        "created": "2026-11-24T06:00:00+00:00",
        "size": 1024,
        "verification": "checksum-mismatch",
        "drill": None,
    },
    "not an entry",
    {"name": "no-time.dump"},
]


def entry(name: str, hour: int, verification: str) -> BackupEntry:
    return BackupEntry(
        name, f"/backups/{name}", datetime(2026, 11, 24, hour, tzinfo=UTC), 1, verification, None
    )


def test_a_listing_is_read_oldest_first_and_unknown_fields_are_ignored() -> None:
    entries = parse_listing(json.dumps(LISTING))
    assert [e.name for e in entries] == [
        "astats-20261124T060000Z.dump",
        "astats-20261124T120000Z.dump",
    ]
    assert entries[0].path == "/backups/astats-20261124T060000Z.dump"
    assert entries[1].drill == "drill ok, restore 3.1 s"


def test_the_status_file_may_grow_fields() -> None:
    status = {
        "interval_minutes": 60,
        "last_result": "failure",
        "last_attempt": "2026-11-24T12:30:00+00:00",
        "last_error": "drill: row counts differ",
        "last_drill": {"summary": "drill failed", "ok": False, "tables": {"a": 1}},
        "last_alert": {"delivered": True},
        "something_new": {"x": 1},
    }
    facts = backup_facts_from("running", status, parse_listing(json.dumps(LISTING)), [])
    assert facts.interval_minutes == 60
    assert facts.newest_name == "astats-20261124T120000Z.dump"
    assert facts.count == 2
    assert (facts.last_result, facts.last_error) == ("failure", "drill: row counts differ")
    assert facts.drill == "drill failed"
    empty = backup_facts_from("running", {}, [], ["schedule", "--interval-minutes=360"])
    assert (empty.interval_minutes, empty.newest_name) == (360.0, None)


def test_the_interval_comes_from_the_scheduler_command_as_the_program_writes_it() -> None:
    assert interval_from_command(["--dest=/backups", "--interval-minutes=15"]) == 15.0
    assert interval_from_command(["--dest=/backups"]) is None


def test_paths_are_the_ones_the_program_gives_the_scheduler() -> None:
    assert backups.BACKUPS_DIR == backup_component.BACKUPS_MOUNT
    assert backups.STATUS_FILE == backup_component.STATUS_FILE


def test_the_launcher_is_found_as_the_program_and_older_stacks_made_it() -> None:
    made = SimpleNamespace(attrs={"Config": {"Entrypoint": launcher.launcher_entrypoint()}})
    assert backups.launcher_of(made) == launcher.launcher_entrypoint()
    uploaded = SimpleNamespace(attrs={"Config": {"Entrypoint": backups.UPLOADED_LAUNCHER}})
    assert backups.launcher_of(uploaded) == ["/bin/sh", "/run/astats/launch"]
    plain = SimpleNamespace(attrs={"Config": {"Entrypoint": ["docker-entrypoint.sh"]}})
    assert backups.launcher_of(plain) == []


def test_restore_latest_takes_the_newest_verified_backup() -> None:
    entries = [
        entry("a.dump", 1, "ok"),
        entry("b.dump", 2, "ok"),
        entry("c.dump", 3, "checksum-missing"),
    ]
    assert choose(entries, RestoreRequest(None, latest=True, yes=True)).name == "b.dump"
    with pytest.raises(ConsoleError, match="no verified backup"):
        choose(entries[2:], RestoreRequest(None, latest=True, yes=True))


def test_restore_refuses_what_it_cannot_verify_or_find() -> None:
    entries = [entry("a.dump", 1, "ok"), entry("bad.dump", 2, "checksum-mismatch")]
    assert choose(entries, RestoreRequest("/backups/a.dump", False, True)).name == "a.dump"
    with pytest.raises(ConsoleError, match="checksum-mismatch; nothing was changed"):
        choose(entries, RestoreRequest("bad.dump", False, True))
    with pytest.raises(ConsoleError, match=r"no backup named x\.dump"):
        choose(entries, RestoreRequest("x.dump", False, True))
    with pytest.raises(ConsoleError, match="is not in /backups"):
        choose(entries, RestoreRequest("/tmp/a.dump", False, True))
    with pytest.raises(ConsoleError, match="--latest-dump"):
        choose(entries, RestoreRequest(None, False, True))

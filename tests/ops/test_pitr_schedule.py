"""The scheduler with --pitr: a pitr block in the status file, refreshed between runs at least
every archive timeout; a new archive problem is posted once, not at every check; a stop during
the physical drill leaves no scratch server and no scratch copy."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astats_ops.pitr_drill import SCRATCH_DIR
from tests.ops.pitr_support import Archiving, archiving_cluster, ops_command, wait_for
from tests.ops.test_alerts import Receiver


@pytest.fixture
def archiving() -> Iterator[Archiving]:
    with archiving_cluster() as cluster:
        cluster.wait_archived(cluster.switch_wal())
        yield cluster


def start_schedule(archiving: Archiving, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ops_command(*archiving.schedule_args(*extra)),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )


def status(archiving: Archiving) -> dict[str, Any]:
    try:
        found: dict[str, Any] = json.loads(archiving.status_file.read_text())
    except (OSError, ValueError):
        return {}
    return found


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    return stderr


def test_the_loop_refreshes_the_archive_between_runs_and_alerts_once(
    archiving: Archiving,
) -> None:
    receiver = Receiver()
    env = {**archiving.env(), "ASTATS_ALERT_WEBHOOK_URL": receiver.url}
    process = start_schedule(
        archiving, env, "--pitr-archive-timeout-s", "0.5", "--pitr-drill-every-hours", "1000"
    )
    try:
        wait_for(lambda: status(archiving).get("last_finished"), 120, "the first run")
        first = status(archiving)
        assert first["last_result"] == "success", first["last_error"]
        block = first["pitr"]
        assert block["last_backup_run"]["type"] == "full" and block["last_backup_run"]["ok"]
        assert block["last_drill"]["ok"] and block["last_drill"]["recovered_to"]
        assert block["newest_backup"]["type"] == "full" and block["backups"] == 1
        assert block["archive"]["failing"] is False and block["archive_timeout_s"] == 0.5
        assert receiver.bodies == []

        checked = block["checked_at"]
        wait_for(lambda: status(archiving)["pitr"]["checked_at"] != checked, 30, "a refresh")
        assert status(archiving)["last_attempt"] == first["last_attempt"], "no new run"

        archiving.block_repo()
        archiving.switch_wal()
        wait_for(
            lambda: status(archiving)["pitr"]["archive"]["failing"], 90, "failing in the status"
        )
        reason = status(archiving)["pitr"]["archive"]["reason"]
        assert reason.startswith("ERROR: [") and "Permission denied" in reason
        wait_for(lambda: receiver.bodies, 30, "the alert")
        seen = status(archiving)["pitr"]["checked_at"]
        wait_for(lambda: status(archiving)["pitr"]["checked_at"] != seen, 30, "more refreshes")
        seen = status(archiving)["pitr"]["checked_at"]
        wait_for(lambda: status(archiving)["pitr"]["checked_at"] != seen, 30, "more refreshes")
    finally:
        stop(process)
        receiver.close()
    # Posted when a problem appears (failing, then lagging once the waiting segment is over two
    # archive timeouts old), never again at the refreshes while the same problems last.
    kinds = [{p.split(":")[0].split(" oldest")[0] for p in b["problems"]} for b in receiver.bodies]
    assert kinds[0] == {"archiving failing"}, receiver.bodies
    assert all(later > earlier for earlier, later in itertools.pairwise(kinds)), kinds
    assert len(kinds) <= 3
    assert receiver.bodies[0]["problems"][0] == f"archiving failing: {reason}"
    assert status(archiving)["state"] == "stopped"


def test_a_stop_during_the_physical_drill_removes_the_scratch_server(
    archiving: Archiving,
) -> None:
    process = start_schedule(archiving, archiving.env(), "--once")
    scratch = archiving.dest / SCRATCH_DIR
    try:
        wait_for(
            lambda: (scratch / "data" / "postmaster.pid").exists() or process.poll() is not None,
            180,
            "the drill's scratch server",
        )
        assert process.poll() is None, "the run ended before its drill started a server"
    finally:
        stderr = stop(process)
    assert "stopped by SIGTERM" in stderr
    assert not scratch.exists()
    assert status(archiving)["last_result"] == "aborted"
    time.sleep(0.5)
    assert not any(
        str(scratch) in p.read_bytes().decode(errors="replace")
        for p in Path("/proc").glob("[0-9]*/cmdline")
        if p.exists()
    )

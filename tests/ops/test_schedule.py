"""The backup container's loop: one run does everything, records it, and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from astats_ops.backup import create_backup
from astats_ops.catalog import scan
from astats_ops.drill import scratch_name
from astats_ops.retention import Policy
from astats_ops.schedule import Job, Scheduler, check_health
from tests.ops.helpers import REPO_ROOT, directory_state, run_cli, schedule_args
from tests.support.postgres import PostgresCluster


def start_schedule(dest: Path, status: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """The long-running `schedule` loop as a child process, its stderr captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "astats_ops", *map(str, schedule_args(dest, status))],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_one_run_backs_up_prunes_uploads_rotates_and_reports_healthy(
    seeded: PostgresCluster,
    dest: Path,
    tmp_path: Path,
    moto_server: str,
    aws_credentials_file: dict[str, str],
) -> None:
    status = tmp_path / "status.json"
    log = tmp_path / "LATEST_LOG.txt"
    log.write_text("request served\n" * 200)
    for day in (1, 2, 3):
        create_backup(dest, env=seeded.env(), now=datetime(2024, 1, day, tzinfo=UTC))
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="backupkey",
        aws_secret_access_key="backupsecret",
    )
    s3.create_bucket(Bucket="nightly")
    env = {**aws_credentials_file, **seeded.env(base={})}

    result = run_cli(
        *schedule_args(
            dest,
            status,
            "--once",
            "--s3-bucket",
            "nightly",
            "--s3-region",
            "us-east-1",
            "--s3-endpoint-url",
            moto_server,
            "--rotate-log",
            log,
            "--rotate-max-bytes",
            "1000",
            "--rotate-keep",
            "2",
        ),
        env=env,
    )

    assert result.returncode == 0, result.stderr
    state = json.loads(status.read_text())
    assert state["last_result"] == "success" and state["last_error"] is None
    assert state["state"] == "idle"
    backups = scan(dest)
    assert backups[0].name == "astats-20240103T000000Z.dump"
    assert len(backups) == 2 and all(b.verified for b in backups)
    assert state["last_backup"] == str(backups[-1].path)
    remote = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="nightly")["Contents"])
    sidecars = (".sha256", ".counts.json")
    assert remote == sorted(n for b in backups for n in (b.name, *(b.name + s for s in sidecars)))
    assert (tmp_path / "LATEST_LOG.txt.1").read_text().count("request served") == 200
    assert log.read_text() == ""
    assert set(state["steps"]) == {"backup", "drill", "prune", "offsite", "rotate-log"}
    assert state["last_drill"]["ok"] and state["last_drill"]["backup"] == backups[-1].name
    assert state["steps"]["drill"].startswith("drill ok ")

    healthy = run_cli("health", "--status-file", status, "--max-age-minutes", "5", env=env)
    assert healthy.returncode == 0 and healthy.stdout.startswith("healthy"), healthy
    time.sleep(0.1)
    stale = run_cli("health", "--status-file", status, "--max-age-minutes", "0.001", env=env)
    assert stale.returncode == 1 and stale.stdout.startswith("unhealthy"), stale


def test_a_failed_run_is_recorded_and_unhealthy(
    seeded: PostgresCluster, dest: Path, tmp_path: Path
) -> None:
    status = tmp_path / "status.json"
    env = seeded.env(password="wrong")

    result = run_cli(*schedule_args(dest, status, "--once"), env=env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    state = json.loads(status.read_text())
    assert state["last_result"] == "failure"
    assert "password authentication failed" in state["last_error"]
    assert state["consecutive_failures"] == 1
    assert directory_state(dest) == {}
    health = run_cli("health", "--status-file", status, "--max-age-minutes", "60", env=env)
    assert health.returncode == 1
    assert "last run failed" in health.stdout and "password" in health.stdout


def write_status(path: Path, **fields: object) -> None:
    base: dict[str, object] = {
        "started_at": datetime.now(UTC).isoformat(),
        "last_result": None,
        "last_success": None,
    }
    path.write_text(json.dumps({**base, **fields}))


def test_health_rules(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    now = datetime.now(UTC)
    assert not check_health(status, 10)[0], "no status file"
    write_status(status)
    assert check_health(status, 10)[0], "just started: healthy during the first interval"
    write_status(status, started_at=(now - timedelta(minutes=30)).isoformat())
    assert not check_health(status, 10)[0], "started long ago and never succeeded"
    write_status(status, last_result="success", last_success=now.isoformat())
    assert check_health(status, 10)[0]
    old = (now - timedelta(minutes=11)).isoformat()
    write_status(status, last_result="success", last_success=old)
    assert not check_health(status, 10)[0], "last success too old"
    write_status(status, last_result="failure", last_success=now.isoformat(), last_error="x")
    assert not check_health(status, 10)[0], "last run failed"
    status.write_text("{not json")
    assert not check_health(status, 10)[0]


SLOW_PG_DUMP = """#!{python}
import os, sys, time
time.sleep(30)
os.execv("{real}", ["{real}", *sys.argv[1:]])
"""


def test_sigterm_during_a_backup_stops_cleanly_without_partial_files(
    seeded: PostgresCluster, dest: Path, tmp_path: Path
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("pg_dump", "pg_restore", "psql"):
        real = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        wrapper = bindir / tool
        if tool == "pg_dump":
            wrapper.write_text(SLOW_PG_DUMP.format(python=sys.executable, real=real))
            wrapper.chmod(0o755)
        else:
            wrapper.symlink_to(real)
    status = tmp_path / "status.json"
    env = seeded.env()
    env.update(PG_BINDIR=str(bindir), PYTHONPATH=str(REPO_ROOT))
    proc = start_schedule(dest, status, env)
    try:
        deadline = time.monotonic() + 20
        while not any(p.name.endswith(".partial") for p in dest.iterdir()):
            assert time.monotonic() < deadline, "the backup never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert directory_state(dest) == {}
    state = json.loads(status.read_text())
    assert state["state"] == "stopped"
    assert state["last_result"] == "aborted"
    lingering = subprocess.run(
        ["pgrep", "-f", str(bindir / "pg_dump")], capture_output=True, text=True
    )
    assert lingering.stdout.strip() == "", "the pg_dump child outlived the schedule"


def test_sigterm_between_runs_exits_promptly(
    seeded: PostgresCluster, dest: Path, tmp_path: Path
) -> None:
    status = tmp_path / "status.json"
    env = {**seeded.env(), "PYTHONPATH": str(REPO_ROOT)}
    proc = start_schedule(dest, status, env)
    try:
        deadline = time.monotonic() + 20
        while not (status.exists() and json.loads(status.read_text())["last_result"]):
            assert time.monotonic() < deadline, "the first run never finished"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    state = json.loads(status.read_text())
    assert state["state"] == "stopped" and state["last_result"] == "success"
    assert len(scan(dest)) == 1
    assert os.path.exists(state["last_backup"])


def test_a_failed_drill_fails_the_run_and_makes_the_schedule_unhealthy(
    seeded: PostgresCluster, dest: Path, tmp_path: Path
) -> None:
    status = tmp_path / "status.json"
    scratch = scratch_name(seeded.database)
    seeded.psql(f'CREATE DATABASE "{scratch}"', database="postgres")
    try:
        result = run_cli(*schedule_args(dest, status, "--once"), env=seeded.env())
    finally:
        seeded.psql(f'DROP DATABASE "{scratch}"', database="postgres")

    assert result.returncode == 1
    state = json.loads(status.read_text())
    assert state["steps"]["backup"] != "failed" and state["steps"]["drill"] == "failed"
    assert not state["last_drill"]["ok"]
    assert "not made by a drill" in state["last_drill"]["error"]
    assert len(scan(dest)) == 1 and scan(dest)[0].verified
    health = run_cli("health", "--status-file", status, "--max-age-minutes", "60", env={})
    assert health.returncode == 1 and "drill" in health.stdout


def test_health_stays_bad_while_the_last_drill_failed(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    now = datetime.now(UTC).isoformat()
    drill = {"ok": False, "error": "row counts differ"}
    write_status(status, last_result="success", last_success=now, last_drill=drill)
    healthy, reason = check_health(status, 10)
    assert not healthy and "last drill failed: row counts differ" in reason
    write_status(status, last_result="success", last_success=now, last_drill={"ok": True})
    assert check_health(status, 10)[0]


def test_drills_are_throttled_by_drill_every_minutes_once_one_passed(
    seeded: PostgresCluster, dest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seeded.env(base={}).items():
        monkeypatch.setenv(name, value)
    scheduler = Scheduler(Job(dest, Policy(3), drill_every_minutes=60), tmp_path / "s.json", 60)
    runs = []
    for _ in range(2):
        scheduler._run_and_record()
        runs.append(dict(scheduler.status["steps"]))
    assert "drill" in runs[0] and "drill" not in runs[1]
    scheduler.status["last_drill"]["ok"] = False
    scheduler._run_and_record()
    assert "drill" in scheduler.status["steps"], "after a failed drill, every run drills"

"""``schedule`` and ``health``: the backup container's loop and its healthcheck.

Each run: backup, local prune, offsite sync + remote prune (when S3 is configured), log
rotation (when configured). Every step runs even if an earlier one failed; the run succeeds
only if all steps do. The status file (JSON, replaced atomically) records::

    {"version": 1, "pid": 7, "started_at": "...", "interval_minutes": 60,
     "state": "running" | "idle" | "stopped",
     "last_attempt": "..." | null, "last_finished": "..." | null,
     "last_result": "success" | "failure" | "aborted" | null,
     "last_success": "..." | null, "last_backup": "/backups/astats-...dump" | null,
     "last_error": "one line per failed step, joined by ' | '" | null,
     "consecutive_failures": 0, "steps": {"backup": "ok", "offsite": "uploaded 1", ...}}

Times are ISO 8601 UTC. ``health`` passes when the last finished run succeeded within
``--max-age-minutes``, or, before any run has finished, while the loop started less than
``--max-age-minutes`` ago (so choose it larger than the interval plus a backup's duration).

SIGTERM/SIGINT stop the loop. During a run, the running pg_dump/pg_restore is killed and the
run is abandoned at its next tool call (a run past its last tool call finishes); the files
the abandoned backup created are removed. The status file is then marked ``stopped`` (and
``last_result: aborted`` if a run was cut short) and the process exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from astats_ops.backup import create_backup
from astats_ops.catalog import scan
from astats_ops.errors import OpsError
from astats_ops.fsutil import atomic_write_text
from astats_ops.logrotate import rotate_log
from astats_ops.offsite import S3Settings, make_client, prune_remote, sync
from astats_ops.proc import Cancelled, request_cancel
from astats_ops.prune import prune_local
from astats_ops.retention import Policy

STATUS_VERSION = 1


class Terminated(BaseException):
    """Raised by SIGTERM/SIGINT to leave the sleep between runs."""


@dataclass(frozen=True)
class LogRotation:
    path: Path
    max_bytes: int
    keep: int
    max_age_hours: float | None = None


@dataclass(frozen=True)
class Job:
    dest: Path
    policy: Policy
    s3: S3Settings | None = None
    log: LogRotation | None = None


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def run_once(job: Job, env: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """One run; returns per-step outcomes and the errors (empty when everything worked)."""
    steps: dict[str, str] = {}
    errors: list[str] = []

    def step(name: str, action: Callable[[], str]) -> None:
        try:
            steps[name] = action()
        except OpsError as exc:
            steps[name] = "failed"
            errors.append(f"{name}: {exc}")

    step("backup", lambda: str(create_backup(job.dest, env=env)))
    step("prune", lambda: f"deleted {len(prune_local(job.dest, job.policy).deleted)}")
    if job.s3 is not None:
        step("offsite", lambda: _offsite(job))
    if job.log is not None:
        step("rotate-log", lambda: _rotate(job.log))
    return steps, errors


def _offsite(job: Job) -> str:
    assert job.s3 is not None
    client = make_client(job.s3)
    result = sync(client, job.s3, scan(job.dest))
    deleted = prune_remote(client, job.s3, job.policy) if result.ok else []
    if not result.ok:
        raise OpsError("; ".join(result.failed.values()))
    return f"uploaded {len(result.uploaded)}, deleted {len(deleted)} remote"


def _rotate(log: LogRotation | None) -> str:
    assert log is not None
    outcome = rotate_log(
        log.path, max_bytes=log.max_bytes, keep=log.keep, max_age_hours=log.max_age_hours
    )
    return f"rotated ({outcome.reason})" if outcome.rotated else "not needed"


class Scheduler:
    def __init__(self, job: Job, status_file: Path, interval_minutes: float) -> None:
        self.job = job
        self.status_file = status_file
        self.interval = interval_minutes * 60
        self.terminating = False
        self.stop_signal = ""
        self.in_run = False
        self.status: dict[str, Any] = {
            "version": STATUS_VERSION,
            "pid": os.getpid(),
            "started_at": isoformat(datetime.now(UTC)),
            "interval_minutes": interval_minutes,
            "state": "idle",
            "last_attempt": None,
            "last_finished": None,
            "last_result": None,
            "last_success": None,
            "last_backup": None,
            "last_error": None,
            "consecutive_failures": 0,
            "steps": {},
        }

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.terminating:
            return
        self.terminating = True
        self.stop_signal = signal.Signals(signum).name
        request_cancel()
        if not self.in_run:
            raise Terminated(self.stop_signal)

    def write_status(self) -> None:
        try:
            atomic_write_text(self.status_file, json.dumps(self.status, indent=2) + "\n")
        except OSError as exc:
            print(f"astats_ops schedule: cannot write status file: {exc}", file=sys.stderr)

    def run(self, *, once: bool = False) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        try:
            self.write_status()
            while True:
                started = time.monotonic()
                succeeded = self._run_and_record()
                if once:
                    return 0 if succeeded else 1
                if self.terminating:
                    raise Terminated(self.stop_signal)
                time.sleep(max(0.0, started + self.interval - time.monotonic()))
        except (Terminated, Cancelled):
            self.status["state"] = "stopped"
            if self.in_run:
                self.status.update(
                    last_result="aborted", last_error=f"run aborted by {self.stop_signal}"
                )
            self.write_status()
            print(f"astats_ops schedule: stopped by {self.stop_signal}", file=sys.stderr)
            return 0

    def _run_and_record(self) -> bool:
        self.status.update(state="running", last_attempt=isoformat(datetime.now(UTC)), steps={})
        self.write_status()
        self.in_run = True
        steps, errors = run_once(self.job)
        self.in_run = False
        finished = isoformat(datetime.now(UTC))
        self.status.update(state="idle", last_finished=finished, steps=steps)
        if errors:
            self.status.update(
                last_result="failure",
                last_error=" | ".join(errors),
                consecutive_failures=self.status["consecutive_failures"] + 1,
            )
            print(f"astats_ops schedule: run failed: {' | '.join(errors)}", file=sys.stderr)
        else:
            self.status.update(
                last_result="success",
                last_success=finished,
                last_backup=steps.get("backup"),
                last_error=None,
                consecutive_failures=0,
            )
            print(f"astats_ops schedule: run ok: {json.dumps(steps)}", file=sys.stderr)
        self.write_status()
        return not errors


def check_health(
    status_file: Path, max_age_minutes: float, now: datetime | None = None
) -> tuple[bool, str]:
    """``(healthy, one-line reason)`` from the status file written by ``schedule``."""
    now = now or datetime.now(UTC)
    try:
        status = json.loads(status_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, f"no status file at {status_file}; is the schedule running?"
    except (OSError, ValueError) as exc:
        return False, f"unreadable status file {status_file}: {exc}"
    limit = timedelta(minutes=max_age_minutes)
    try:
        if status.get("last_result") == "failure":
            return False, f"last run failed: {status.get('last_error')}"
        if status.get("last_success"):
            age = now - datetime.fromisoformat(status["last_success"])
            if age <= limit:
                return True, f"last run succeeded {_minutes(age)} ago"
            return False, f"last success {_minutes(age)} ago, older than {max_age_minutes} min"
        age = now - datetime.fromisoformat(status["started_at"])
    except (KeyError, TypeError, ValueError) as exc:
        return False, f"malformed status file {status_file}: {exc}"
    if age <= limit:
        return True, f"starting: no run finished yet, started {_minutes(age)} ago"
    return False, f"no successful run since start {_minutes(age)} ago"


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:.1f} min"

"""``schedule`` and ``health``: the backup container's loop and its healthcheck.

Each run: backup, a restore drill of the newest verified backup (after every backup, or at most
every ``--drill-every-minutes`` once one has passed), local prune, offsite sync + remote prune
(when S3 is configured), log rotation (when configured). Every step runs even if an earlier one
failed; the run succeeds only if all steps do. A failed run, or a newest backup older than two
intervals, is posted to the alert webhook when one is configured (see :mod:`astats_ops.alerts`).
The status file (JSON, replaced atomically) records::

    {"version": 1, "pid": 7, "started_at": "...", "interval_minutes": 60,
     "state": "running" | "idle" | "stopped",
     "last_attempt": "..." | null, "last_finished": "..." | null,
     "last_result": "success" | "failure" | "aborted" | null,
     "last_success": "..." | null, "last_backup": "/backups/astats-...dump" | null,
     "last_error": "one line per failed step, joined by ' | '" | null,
     "consecutive_failures": 0, "steps": {"backup": "ok", "offsite": "uploaded 1", ...},
     "last_drill": {"backup": "...", "ok": true, "finished": "...", "restore_seconds": 3.1,
                    "summary": "drill ok ..., restore 3.1 s", "error": null, ...} | null,
     "last_alert": {"at": "...", "problems": [...], "delivered": true, "attempts": 1,
                    "error": null} | null}

With ``--pitr`` each run also ensures pgBackRest's stanza, takes the physical backup that is due
(see :func:`astats_ops.pitr.due_backup`) and the physical drill that is due (every
``--pitr-drill-every-hours``, and at every run after one failed), and the status file gets a
``"pitr"`` block (:mod:`astats_ops.pitr`; ``checked_at``, ``archive``, ``newest_backup``,
``oldest_backup_at`` (the oldest backup's end, where restores reach back to), ``backups``,
``repo_bytes``, ``last_backup_run``, ``last_drill``, ``error``). Between runs the loop wakes
every ``--pitr-archive-timeout-s`` to refresh its ``archive`` and alerts when a new archive
problem appears.

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
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from astats_ops import pitr
from astats_ops.alerts import has_new_problem, post_alert, webhook_url
from astats_ops.backup import create_backup
from astats_ops.catalog import scan
from astats_ops.drill import DrillResult, run_drill
from astats_ops.errors import OpsError
from astats_ops.fsutil import atomic_write_text
from astats_ops.logrotate import rotate_log
from astats_ops.offsite import OffsiteTarget, make_client, prune_remote, sync
from astats_ops.pgbackrest import read_info
from astats_ops.pitr import BackupRun, PitrSettings, Problem
from astats_ops.pitr_drill import PitrDrillResult, run_pitr_drill
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
    s3: OffsiteTarget | None = None
    log: LogRotation | None = None
    drill: bool = True
    drill_every_minutes: float | None = None
    drill_tablespace: str | None = None
    pitr: PitrSettings | None = None


@dataclass
class RunOutcome:
    steps: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    drill: DrillResult | None = None
    pitr_backup: BackupRun | None = None
    pitr_drill: PitrDrillResult | None = None


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def run_once(
    job: Job,
    *,
    drill: bool,
    env: Mapping[str, str] | None = None,
    pitr_drill: bool = False,
) -> RunOutcome:
    """One run; ``drill`` and ``pitr_drill`` say whether the drills are due. ``errors`` is
    empty when all worked."""
    outcome = RunOutcome()

    def step(name: str, action: Callable[[], str], problem: str | None = None) -> None:
        try:
            outcome.steps[name] = action()
        except OpsError as exc:
            outcome.steps[name] = "failed"
            outcome.errors.append(f"{problem or name}: {exc}")

    step("backup", lambda: str(create_backup(job.dest, env=env)))
    if drill and outcome.steps["backup"] != "failed":
        step("drill", lambda: _drill(job, outcome, env))
    step("prune", lambda: f"deleted {len(prune_local(job.dest, job.policy).deleted)}")
    if job.s3 is not None:
        step("offsite", lambda: _offsite(job))
    if job.log is not None:
        step("rotate-log", lambda: _rotate(job.log))
    if job.pitr is not None:
        physical = dict(os.environ if env is None else env)
        settings = job.pitr
        step("pitr-stanza", lambda: pitr.ensure_stanza(physical), "physical backup failed")
        step(
            "pitr-backup",
            lambda: _pitr_backup(settings, outcome, physical),
            "physical backup failed",
        )
        if pitr_drill:
            step(
                "pitr-drill",
                lambda: _pitr_drill(job.dest, settings, outcome, physical),
                "physical drill failed",
            )
    return outcome


def _pitr_backup(settings: PitrSettings, outcome: RunOutcome, env: Mapping[str, str]) -> str:
    kind, why = pitr.due_backup(read_info(env), datetime.now(UTC), settings)
    if kind is None:
        return why
    outcome.pitr_backup = pitr.take_backup(kind, env)
    if outcome.pitr_backup.error is not None:
        raise OpsError(outcome.pitr_backup.error)
    return f"{kind} backup in {outcome.pitr_backup.seconds:.1f} s ({why})"


def _pitr_drill(
    dest: Path, settings: PitrSettings, outcome: RunOutcome, env: Mapping[str, str]
) -> str:
    if read_info(env).newest is None:
        return "no physical backup to drill yet"
    outcome.pitr_drill = run_pitr_drill(
        dest, env=env, wait_archive_s=2 * settings.archive_timeout_s
    )
    if outcome.pitr_drill.error is not None:
        raise OpsError(outcome.pitr_drill.error)
    return outcome.pitr_drill.summary


def _drill(job: Job, outcome: RunOutcome, env: Mapping[str, str] | None) -> str:
    outcome.drill = run_drill(job.dest, env=env, tablespace=job.drill_tablespace)
    if not outcome.drill.ok:
        raise OpsError(outcome.drill.error or "failed")
    return outcome.drill.summary()


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
            "last_drill": None,
            "last_alert": None,
        }
        self.alerted: set[str] = set()
        if job.pitr is not None:
            self.status["pitr"] = pitr.empty_block(job.pitr.archive_timeout_s)
            self.status["pitr"].update(self._earlier_pitr_runs())

    def _earlier_pitr_runs(self) -> dict[str, Any]:
        """The last physical backup run and drill a previous scheduler recorded, so a restart
        does not drill again before it is due."""
        try:
            earlier = json.loads(self.status_file.read_text(encoding="utf-8")).get("pitr") or {}
            return {key: earlier.get(key) for key in ("last_backup_run", "last_drill")}
        except (OSError, ValueError, AttributeError):
            return {}

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
                self._wait_until(started + self.interval)
        except (Terminated, Cancelled):
            self.status["state"] = "stopped"
            if self.in_run:
                self.status.update(
                    last_result="aborted", last_error=f"run aborted by {self.stop_signal}"
                )
            self.write_status()
            print(f"astats_ops schedule: stopped by {self.stop_signal}", file=sys.stderr)
            return 0

    def _wait_until(self, deadline: float) -> None:
        """Sleep until the next run; with PITR, wake every archive timeout to check the archive."""
        while (remaining := deadline - time.monotonic()) > 0:
            if self.job.pitr is None:
                time.sleep(remaining)
                return
            time.sleep(min(remaining, self.job.pitr.archive_timeout_s))
            if deadline - time.monotonic() > 0:
                self._check_archive()

    def _check_archive(self) -> None:
        problems = self._refresh_pitr(whole=False)
        self.write_status()
        if has_new_problem(self.alerted, {p.kind for p in problems}):
            self._alert([], archive=problems)
        else:
            self.alerted &= {p.kind for p in problems}

    def _refresh_pitr(self, *, whole: bool) -> list[Problem]:
        """Refresh the status file's pitr block (only its archive unless ``whole``); the
        archive's problems."""
        assert self.job.pitr is not None
        block = self.status["pitr"]
        try:
            status = (pitr.refresh if whole else pitr.refresh_archive)(block, os.environ)
        except (OpsError, OSError) as exc:
            block["error"] = f"checking the archive failed: {exc}"
            print(f"astats_ops schedule: {block['error']}", file=sys.stderr)
            return []
        return pitr.archive_problems(status, self.job.pitr.archive_timeout_s)

    def _pitr_drill_due(self) -> bool:
        if self.job.pitr is None:
            return False
        last = self.status["pitr"]["last_drill"]
        if last is None or not last["ok"]:
            return True
        age = datetime.now(UTC) - datetime.fromisoformat(last["finished_at"])
        return age >= timedelta(hours=self.job.pitr.drill_every_hours)

    def _drill_due(self) -> bool:
        last = self.status["last_drill"]
        if not self.job.drill:
            return False
        if self.job.drill_every_minutes is None or last is None or not last["ok"]:
            return True
        age = datetime.now(UTC) - datetime.fromisoformat(last["finished"])
        return age >= timedelta(minutes=self.job.drill_every_minutes)

    def _run_and_record(self) -> bool:
        self.status.update(state="running", last_attempt=isoformat(datetime.now(UTC)), steps={})
        self.write_status()
        self.in_run = True
        outcome = run_once(self.job, drill=self._drill_due(), pitr_drill=self._pitr_drill_due())
        steps, errors = outcome.steps, outcome.errors
        if outcome.drill is not None:
            self.status["last_drill"] = {
                **asdict(outcome.drill),
                "summary": outcome.drill.summary(),
            }
        archive: list[Problem] = []
        if self.job.pitr is not None:
            block = self.status["pitr"]
            if outcome.pitr_backup is not None:
                block["last_backup_run"] = asdict(outcome.pitr_backup)
            if outcome.pitr_drill is not None:
                block["last_drill"] = outcome.pitr_drill.as_status()
            archive = self._refresh_pitr(whole=True)
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
        self._alert(errors, archive=archive)
        return not errors

    def _alert(self, errors: list[str], *, archive: list[Problem] | None = None) -> None:
        """Post the run's problems; the archive's are posted with them, and on their own only
        when one of them is new."""
        archive = archive or []
        problems = [*errors, *self._stale_backup()]
        kinds = {p.kind for p in archive}
        if problems or has_new_problem(self.alerted, kinds):
            problems += [p.text for p in archive]
        self.alerted = kinds
        url = webhook_url(os.environ)
        if not problems or url is None:
            return
        now = isoformat(datetime.now(UTC))
        payload = {
            "source": "astats_ops schedule",
            "host": socket.gethostname(),
            "database": os.environ.get("PGDATABASE"),
            "at": now,
            "problems": problems,
            "last_success": self.status["last_success"],
            "last_backup": self.status["last_backup"],
            "last_drill": self.status["last_drill"],
        }
        delivery = post_alert(url, payload)
        self.status["last_alert"] = {"at": now, "problems": problems, **asdict(delivery)}
        if not delivery.delivered:
            print(
                f"astats_ops schedule: alert not delivered after {delivery.attempts} "
                f"attempt(s): {delivery.error}",
                file=sys.stderr,
            )
        self.write_status()

    def _stale_backup(self) -> list[str]:
        """A problem line when the newest backup is older than two intervals."""
        try:
            backups = scan(self.job.dest, check=False)
        except OpsError as exc:
            return [f"stale: {exc}"]
        limit = timedelta(seconds=2 * self.interval)
        if not backups:
            started = datetime.fromisoformat(self.status["started_at"])
            if datetime.now(UTC) - started > limit:
                return [f"stale: no backup in {self.job.dest} after two intervals"]
            return []
        age = datetime.now(UTC) - backups[-1].created
        if age <= limit:
            return []
        return [
            f"stale: newest backup {backups[-1].name} is {_minutes(age)} old, older than two "
            f"intervals ({_minutes(limit)})"
        ]


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
        drill = status.get("last_drill")
        if drill and not drill["ok"]:
            return False, f"last drill failed: {drill['error']}"
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

"""Command line: ``python -m astats_ops <command> ...``.

Known failures print ONE line ``astats_ops <command>: error: ...`` on stderr and exit 1;
usage errors exit 2 (argparse). The database is chosen by the libpq environment variables
(PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD or PGPASSFILE); S3 credentials come from
boto3's standard sources and the alert webhook from ASTATS_ALERT_WEBHOOK_URL, never from
arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from astats_ops import pitr
from astats_ops.backup import create_backup
from astats_ops.catalog import BackupFile, scan
from astats_ops.drill import DrillResult, read_drills, run_drill
from astats_ops.errors import OpsError, one_line
from astats_ops.logrotate import rotate_log
from astats_ops.offsite import OffsiteTarget, make_client, prune_remote, sync
from astats_ops.pitr import PitrSettings
from astats_ops.pitr_drill import run_pitr_drill
from astats_ops.prune import prune_local
from astats_ops.restore import restore_backup
from astats_ops.retention import Policy
from astats_ops.schedule import Job, LogRotation, Scheduler, check_health

Handler = Callable[[argparse.Namespace], int]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _add_dest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", type=Path, required=True, help="backup directory")


def _add_drill_tablespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--drill-tablespace",
        metavar="NAME",
        help="create the drill's scratch database there (another disk than the live data)",
    )


def _add_retention(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group("retention")
    group.add_argument(
        "--keep-last",
        type=_positive_int,
        required=required,
        default=None if required else 7,
        help="keep the N newest backups" + ("" if required else " (default 7)"),
    )
    group.add_argument("--keep-daily", type=_non_negative_int, default=0, metavar="D")
    group.add_argument("--keep-weekly", type=_non_negative_int, default=0, metavar="W")


def _add_s3(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_argument_group(
        "offsite copy (credentials from AWS_* variables or AWS_SHARED_CREDENTIALS_FILE)"
    )
    group.add_argument("--s3-bucket", required=required)
    group.add_argument("--s3-prefix", default="")
    group.add_argument("--s3-region")
    group.add_argument("--s3-endpoint-url")


def _s3_settings(args: argparse.Namespace) -> OffsiteTarget | None:
    if not args.s3_bucket:
        return None
    return OffsiteTarget(args.s3_bucket, args.s3_prefix, args.s3_region, args.s3_endpoint_url)


def _policy(args: argparse.Namespace) -> Policy:
    return Policy(args.keep_last, args.keep_daily, args.keep_weekly)


def _upload_pending(dest: Path, settings: OffsiteTarget, policy: Policy | None) -> int:
    client = make_client(settings)
    result = sync(client, settings, scan(dest))
    for name in result.uploaded:
        print(f"uploaded {name} to {settings.describe()}")
    if not result.ok:
        raise OpsError(" | ".join(result.failed.values()))
    if policy is not None:
        for name in prune_remote(client, settings, policy):
            print(f"deleted remote {name}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    path = create_backup(args.dest)
    print(path)
    sys.stdout.flush()
    settings = _s3_settings(args)
    if settings is not None:
        _upload_pending(args.dest, settings, None)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    target = restore_backup(args.file, assume_yes=args.yes)
    print(f"restored {args.file} into {target.describe()}")
    return 0


def _age(backup: BackupFile, now: datetime) -> str:
    seconds = int((now - backup.created).total_seconds())
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def cmd_list(args: argparse.Namespace) -> int:
    backups = scan(args.dest)
    drills = read_drills(args.dest)
    now = datetime.now(UTC)
    if args.json:
        rows = [
            {
                "name": b.name,
                "path": str(b.path),
                "database": b.database,
                "created": b.created.isoformat(),
                "age_seconds": int((now - b.created).total_seconds()),
                "size": b.size,
                "verification": str(b.verification),
                "drill": drills.get(b.name),
            }
            for b in backups
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not backups:
        print(f"no backups in {args.dest}")
        return 0
    width = max(len(b.name) for b in backups)
    print(f"{'NAME':<{width}}  {'SIZE':>12}  {'AGE':>8}  {'VERIFICATION':<17}  DRILL")
    for b in reversed(backups):
        drill = drills.get(b.name)
        summary = DrillResult(**drill).summary() if drill else "-"
        print(
            f"{b.name:<{width}}  {b.size:>12}  {_age(b, now):>8}  {b.verification:<17}  {summary}"
        )
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    result = run_drill(args.dest, tablespace=args.drill_tablespace)
    if not result.ok:
        raise OpsError(result.summary())
    print(f"{result.backup}: {result.summary()}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    policy = _policy(args)
    pruned = prune_local(args.dest, policy, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for backup in pruned.deleted:
        print(f"{verb} {backup.path}")
    for partial in pruned.stale_partials:
        print(f"{verb} stale {partial}")
    settings = _s3_settings(args)
    if settings is not None:
        client = make_client(settings)
        for name in prune_remote(client, settings, policy, dry_run=args.dry_run):
            print(f"{verb} remote {name}")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    settings = _s3_settings(args)
    assert settings is not None
    policy = _policy(args) if args.keep_last is not None else None
    return _upload_pending(args.dest, settings, policy)


def cmd_rotate_log(args: argparse.Namespace) -> int:
    result = rotate_log(
        args.file, max_bytes=args.max_bytes, keep=args.keep, max_age_hours=args.max_age_hours
    )
    if result.rotated:
        print(
            f"rotated {args.file} ({result.reason}): {result.copied_bytes} bytes copied, "
            f"truncate window {result.loss_window_seconds * 1e6:.0f} us"
        )
    else:
        print(f"not rotated: {result.reason}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    log = None
    if args.rotate_log is not None:
        log = LogRotation(
            args.rotate_log, args.rotate_max_bytes, args.rotate_keep, args.rotate_max_age_hours
        )
    job = Job(
        args.dest,
        _policy(args),
        _s3_settings(args),
        log,
        drill=not args.no_drill,
        drill_every_minutes=args.drill_every_minutes,
        drill_tablespace=args.drill_tablespace,
        pitr=_pitr_settings(args),
    )
    return Scheduler(job, args.status_file, args.interval_minutes).run(once=args.once)


def _pitr_settings(args: argparse.Namespace) -> PitrSettings | None:
    if not args.pitr:
        return None
    return PitrSettings(
        archive_timeout_s=args.pitr_archive_timeout_s,
        full_every_hours=args.pitr_full_every_hours,
        diff_every_hours=args.pitr_diff_every_hours,
        drill_every_hours=args.pitr_drill_every_hours,
    )


def cmd_pitr_status(args: argparse.Namespace) -> int:
    env = os.environ
    timeout = args.archive_timeout_s or pitr.server_archive_timeout(env) or 60.0
    block = pitr.empty_block(timeout)
    if args.status_file is not None:
        block.update(_recorded_runs(args.status_file))
    status = pitr.refresh(block, env)
    problems = pitr.archive_problems(status, timeout)
    if args.json:
        print(json.dumps({**block, "problems": [p.text for p in problems]}, indent=2))
        return 0
    newest = block["newest_backup"]
    print(f"archive: last archived {status.last_archived_wal} at {status.last_archived_at}")
    print(
        f"archive: {status.pending_segments} segment(s) waiting, oldest "
        f"{status.oldest_pending_age_s} s; pg_wal {pitr.human_bytes(status.pg_wal_bytes)}"
    )
    if newest is not None:
        print(
            f"backups: {block['backups']}, newest {newest['label']} ({newest['type']}) at "
            f"{newest['stopped_at']}, restorable from {block['oldest_backup_at']}"
        )
    else:
        print("backups: none yet")
    for line in [*(p.text for p in problems), *([block["error"]] if block["error"] else [])]:
        print(f"problem: {line}")
    return 1 if problems or block["error"] else 0


def _recorded_runs(status_file: Path) -> dict[str, object]:
    try:
        recorded = json.loads(status_file.read_text(encoding="utf-8")).get("pitr") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {key: recorded.get(key) for key in ("last_backup_run", "last_drill")}


def cmd_pitr_drill(args: argparse.Namespace) -> int:
    result = run_pitr_drill(args.dest)
    if not result.ok:
        raise OpsError(result.error or result.summary)
    print(result.summary)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    healthy, reason = check_health(args.status_file, args.max_age_minutes)
    print(("healthy: " if healthy else "unhealthy: ") + reason)
    return 0 if healthy else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astats_ops",
        description="Backups, restores and maintenance for the A-Stats Engine database. "
        "The database comes from PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD/PGPASSFILE.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    backup = add("backup", cmd_backup, "take a verified pg_dump backup into --dest")
    _add_dest(backup)
    _add_s3(backup)

    restore = add("restore", cmd_restore, "restore a verified backup into PGDATABASE")
    restore.add_argument("file", type=Path)
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    drill = add(
        "drill",
        cmd_drill,
        "restore the newest verified backup into a scratch database and check it",
    )
    _add_dest(drill)
    _add_drill_tablespace(drill)

    listing = add("list", cmd_list, "list backups with size, age, verification and drill")
    _add_dest(listing)
    listing.add_argument("--json", action="store_true")

    prune = add("prune", cmd_prune, "delete backups the retention policy does not keep")
    _add_dest(prune)
    _add_retention(prune, required=True)
    prune.add_argument("--dry-run", action="store_true")
    _add_s3(prune)

    upload = add("upload", cmd_upload, "upload verified backups missing from S3")
    _add_dest(upload)
    _add_s3(upload, required=True)
    upload.add_argument("--keep-last", type=_positive_int, help="also prune the remote copies")
    upload.add_argument("--keep-daily", type=_non_negative_int, default=0)
    upload.add_argument("--keep-weekly", type=_non_negative_int, default=0)

    rotate = add("rotate-log", cmd_rotate_log, "copy-truncate rotate a log file")
    rotate.add_argument("file", type=Path)
    rotate.add_argument("--max-bytes", type=_positive_int, required=True)
    rotate.add_argument("--max-age-hours", type=_positive_float)
    rotate.add_argument("--keep", type=_positive_int, required=True)

    schedule = add("schedule", cmd_schedule, "run backup, prune, upload, rotation periodically")
    _add_dest(schedule)
    schedule.add_argument("--interval-minutes", type=_positive_float, required=True)
    schedule.add_argument("--status-file", type=Path, required=True)
    schedule.add_argument("--once", action="store_true", help="one run, then exit")
    schedule.add_argument(
        "--drill-every-minutes",
        type=_positive_float,
        help="drill at most this often once a drill has passed (default: after every backup)",
    )
    _add_drill_tablespace(schedule)
    schedule.add_argument(
        "--no-drill", action="store_true", help="no restore drills (the role cannot CREATEDB)"
    )
    _add_retention(schedule, required=False)
    _add_s3(schedule)
    schedule.add_argument("--rotate-log", type=Path, metavar="FILE")
    schedule.add_argument("--rotate-max-bytes", type=_positive_int, default=10 * 1024 * 1024)
    schedule.add_argument("--rotate-max-age-hours", type=_positive_float)
    schedule.add_argument("--rotate-keep", type=_positive_int, default=5)
    physical = schedule.add_argument_group(
        "point-in-time recovery (pgBackRest, configured by its PGBACKREST_* environment)"
    )
    physical.add_argument(
        "--pitr", action="store_true", help="physical backups and drills, archive checks"
    )
    physical.add_argument(
        "--pitr-archive-timeout-s",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="the server's archive_timeout: the archive is checked this often (default 60)",
    )
    physical.add_argument("--pitr-full-every-hours", type=_positive_float, default=168.0)
    physical.add_argument("--pitr-diff-every-hours", type=_positive_float, default=24.0)
    physical.add_argument("--pitr-drill-every-hours", type=_positive_float, default=24.0)

    pitr_status = add(
        "pitr-status",
        cmd_pitr_status,
        "the WAL archive's health and the physical backups (exit 1 on a problem, unless --json)",
    )
    pitr_status.add_argument("--json", action="store_true")
    pitr_status.add_argument(
        "--archive-timeout-s",
        type=_positive_float,
        metavar="S",
        help="lagging means waiting over twice this (default: the server's archive_timeout)",
    )
    pitr_status.add_argument(
        "--status-file",
        type=Path,
        help="the scheduler's status file, for its last physical backup run and drill",
    )

    pitr_drill = add(
        "pitr-drill",
        cmd_pitr_drill,
        "restore the newest physical backup and the archived WAL into a scratch server, check it",
    )
    pitr_drill.add_argument(
        "--dest", type=Path, required=True, help="backup directory (the scratch copy goes there)"
    )

    health = add("health", cmd_health, "exit 0 if the schedule's last run is recent and ok")
    health.add_argument("--status-file", type=Path, required=True)
    health.add_argument("--max-age-minutes", type=_positive_float, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except OpsError as exc:
        print(f"astats_ops {args.command}: error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"astats_ops {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"astats_ops {args.command}: interrupted", file=sys.stderr)
        return 130
    return 1

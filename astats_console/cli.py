"""``astats``: the operator's console. Every failure is one line; usage errors exit 2."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from docker.errors import DockerException
from rich.console import Console

from astats_console import (
    backups,
    exec,
    logs,
    pitr_repo,
    pitr_restore,
    plan_source,
    releases,
    restore,
    rollback,
    status,
    watch,
)
from astats_console.durations import format_bytes, parse_duration, parse_since
from astats_console.engine import connect
from astats_console.errors import ConsoleError, one_line
from astats_console.reasons import Thresholds
from astats_console.stack import LOGS_PSEUDO_SERVICE, Stack, default_stack_name

Handler = Callable[[argparse.Namespace, Stack, Console, Console], int]


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error of the console."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _duration(text: str) -> timedelta:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return value


def _since(text: str) -> datetime:
    try:
        return parse_since(text, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular expression: {exc}") from None


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage between 0 and 100")
    return value


def _webhook(text: str) -> str:
    if not re.match(r"https?://[^/\s]+", text):
        raise argparse.ArgumentTypeError("the webhook must be an http:// or https:// URL")
    return text


def _thresholds(args: argparse.Namespace) -> Thresholds:
    return Thresholds(args.disk_threshold, args.restarts, args.window)


def cmd_status(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    if args.watch:
        return status.watch_status(stack, _thresholds(args), out, args.interval.total_seconds())
    return status.run_status(stack, _thresholds(args), out, as_json=args.json)


def cmd_logs(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    options = logs.LogOptions(
        services=args.services,
        follow=args.follow,
        since=args.since,
        tail=args.tail,
        grep=args.grep,
        timestamps=args.timestamps,
    )
    return logs.show_logs(stack, options, out, err)


def cmd_backup(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    job = backups.scheduler(stack)
    with err.status("backup starting") as progress:

        def show(seconds: float, written: int | None) -> None:
            size = f", {format_bytes(written)} written" if written is not None else ""
            progress.update(f"backup running: {seconds:.0f}s{size}")

        path = backups.take_backup(job, show)
    out.print(path, markup=False, highlight=False)
    return 0


def cmd_backups(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    return backups.show_backups(stack, out, as_json=args.json)


def cmd_restore(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    chosen = [
        name
        for name, given in (
            ("FILE", args.file),
            ("--latest", args.latest),
            ("--to", args.to),
            ("--latest-dump", args.latest_dump),
        )
        if given
    ]
    if len(chosen) != 1:
        raise ConsoleError(
            "say what to restore: --to TIME or --latest (point in time), or a dump file or "
            "--latest-dump (see astats backups)"
            + (f"; got {' and '.join(chosen)}" if chosen else "")
        )
    physical_only = [
        n for n, v in (("--check-sql", args.check_sql), ("--dry-run", args.dry_run)) if v
    ]
    if (args.file or args.latest_dump) and physical_only:
        raise ConsoleError(f"{' and '.join(physical_only)} go with --to or --latest, not a dump")
    if args.to or args.latest:
        target = pitr_repo.parse_time(args.to) if args.to else None
        pitr = pitr_restore.PitrRequest(
            target=target, yes=args.yes, check_sql=args.check_sql, dry_run=args.dry_run
        )
        return pitr_restore.run_pitr_restore(stack, stack.client, pitr, out)
    request = restore.RestoreRequest(file=args.file, latest=args.latest_dump, yes=args.yes)
    return restore.run_restore(stack, request, out)


def cmd_plan(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    return plan_source.run_plan(stack, out, markdown=args.markdown)


def cmd_releases(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    return releases.show_releases(stack, out, as_json=args.json)


def cmd_rollback(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    request = rollback.RollbackRequest(
        release=args.release, yes=args.yes, restore_data=args.restore_data
    )
    return rollback.run_rollback(stack, request, out)


def cmd_psql(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    exec.replace_process(exec.psql_argv(stack, args.psql_args))


def cmd_shell(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    exec.replace_process(exec.shell_argv(stack, args.service))


def cmd_watch(args: argparse.Namespace, stack: Stack, out: Console, err: Console) -> int:
    return watch.run_watch(
        stack,
        _thresholds(args),
        out,
        err,
        webhook_url=args.webhook,
        check_every=args.check_every,
    )


def _add_thresholds(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what needs attention")
    group.add_argument(
        "--disk-threshold",
        type=_percent,
        default=90.0,
        metavar="PERCENT",
        help="the engine's data disk above this is a problem (default 90)",
    )
    group.add_argument(
        "--restarts",
        type=_count,
        default=3,
        metavar="N",
        help="N restarts within --window are a restart loop (default 3)",
    )
    group.add_argument(
        "--window", type=_duration, default=timedelta(minutes=10), help="(default 10m)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="astats",
        description="The A-Stats Engine stack on this Docker engine (DOCKER_HOST is honoured): "
        "status, logs, backups, restore, psql, shell and a watch with alerts.",
    )
    stack_help = "the stack (default: the selected Pulumi stack, else dev)"
    parser.add_argument("--stack", help=stack_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--stack", default=argparse.SUPPRESS, help=stack_help)
        sub.set_defaults(handler=handler)
        return sub

    st = add(
        "status",
        cmd_status,
        "one row per service, then disk, volumes, backups and certificates; exits 1 with one line "
        "per problem",
    )
    st.add_argument("--json", action="store_true", help="one JSON document")
    st.add_argument("--watch", action="store_true", help="redraw until Ctrl-C")
    st.add_argument(
        "--interval",
        type=_duration,
        default=timedelta(seconds=5),
        help="redraw period with --watch (default 5s)",
    )
    _add_thresholds(st)

    lg = add("logs", cmd_logs, "the services' logs merged in time order")
    lg.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"services (default all); {LOGS_PSEUDO_SERVICE} is the backend's LATEST_LOG.txt",
    )
    lg.add_argument("-f", "--follow", action="store_true", help="keep following, across rollouts")
    lg.add_argument("--since", type=_since, help="a duration back (10m, 1h30m) or an ISO time")
    lg.add_argument("--tail", type=_count, metavar="N", help="the last N lines of each source")
    lg.add_argument("--grep", type=_regex, metavar="RE", help="only lines matching RE")
    lg.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")

    add("backup", cmd_backup, "take a verified backup now (in the scheduler) and print its path")
    bl = add(
        "backups",
        cmd_backups,
        "list the dumps (size, age, verification, drill) and the physical backups with their "
        "last drill",
    )
    bl.add_argument("--json", action="store_true")

    rs = add(
        "restore",
        cmd_restore,
        "restore to a point in time (--to, --latest) into a new volume, check it and switch the "
        "stack to it; or load a verified dump (FILE, --latest-dump)",
    )
    rs.add_argument("file", nargs="?", metavar="FILE", help="a dump's name or /backups path")
    rs.add_argument(
        "--to", metavar="TIME", help="point in time, ISO 8601 (UTC unless it names a zone)"
    )
    rs.add_argument("--latest", action="store_true", help="up to the newest archived WAL")
    rs.add_argument("--latest-dump", action="store_true", help="the newest verified dump")
    rs.add_argument(
        "--check-sql", metavar="SQL", help="a query the restored data must pass before the switch"
    )
    rs.add_argument(
        "--dry-run",
        action="store_true",
        help="restore and check into a new volume, then remove it; switch nothing",
    )
    rs.add_argument("--yes", action="store_true", help="do not ask (needed without a TTY)")

    rl = add("releases", cmd_releases, "the recorded releases, newest first, and which is live")
    rl.add_argument("--json", action="store_true")

    rb = add(
        "rollback",
        cmd_rollback,
        "go back to a release: code and schema together (a downgrade, or the data restored), "
        "pinned until you unpin",
    )
    rb.add_argument("release", nargs="?", metavar="RELEASE", help="default: the previous one")
    rb.add_argument("--yes", action="store_true", help="do not ask (needed without a TTY)")
    rb.add_argument(
        "--restore-data",
        action="store_true",
        help="when a migration cannot be undone, restore the data to before it ran",
    )

    add(
        "psql",
        cmd_psql,
        "psql in the database container; no password on any command line. "
        "Further arguments go to psql, e.g. astats psql -c 'select 1'",
    )

    sh = add("shell", cmd_shell, "a shell in a service's container, with its environment")
    sh.add_argument("service", metavar="SERVICE")

    pl = add(
        "plan",
        cmd_plan,
        "what pulumi up would do, in operators' words: the backup and migration (naming the new "
        "revisions), how each service is replaced, data at risk, secrets by key; exits 0 "
        "nothing to do, 2 changes, 3 danger (data at risk), 1 when the preview fails",
    )
    pl.add_argument("--markdown", action="store_true", help="Markdown, for a pull-request comment")

    wt = add(
        "watch",
        cmd_watch,
        "report OOM kills, crashes, unhealthy containers, restart loops, a full disk, failed or "
        "overdue backups and certificate problems as they happen (and when those end)",
    )
    wt.add_argument("--webhook", type=_webhook, metavar="URL", help="also POST each report as JSON")
    wt.add_argument(
        "--check-every",
        type=_duration,
        default=timedelta(minutes=1),
        help="how often disk, backups and certificates are checked (default 1m)",
    )
    _add_thresholds(wt)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Everything astats does not know goes to psql (its own options start with a dash too).
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "psql":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.psql_args = extra
    # Piped output (cron, a monitoring system) gets whole table rows, not an 80-column squeeze.
    out = Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 250)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    handler: Handler = args.handler
    prefix = f"astats {args.command}"
    try:
        client = connect()
        stack = Stack(client, args.stack or default_stack_name())
        return handler(args, stack, out, err)
    except ConsoleError as exc:
        err.print(f"{prefix}: error: {exc}", markup=False)
    except DockerException as exc:
        err.print(f"{prefix}: error: the engine refused: {one_line(str(exc))}", markup=False)
    except KeyboardInterrupt:
        err.print(f"{prefix}: interrupted", markup=False)
        return 130
    return 1

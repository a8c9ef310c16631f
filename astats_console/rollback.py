"""``astats rollback [RELEASE] [--yes] [--restore-data]``: code and schema back together.

1. The plan: the target release (default: the one before the live one), its images, the live
   and the target Alembic heads, and the migrations in between, read from the running (newer)
   backend, which has their scripts. It is printed, then confirmed (or ``--yes``).
2. **Schema.** Every migration in between has a real downgrade: a fresh verified backup, then
   `alembic downgrade <target head>` in the running backend (its image has the scripts); the
   data written since is kept. Any of them irreversible: refused, naming it, unless
   ``--restore-data``, which restores the data to the moment before the first of them ran
   (point in time where the stack archives WAL, else that release's pre-migration dump); the
   plan says how many minutes of writes that loses.
3. **Code.** The stack's config pins the release's images (`releases.pin`) and `pulumi up`
   replaces the backend and the frontend as any rollout does (no failed request). A plain
   `pulumi up` later keeps them until the pin is removed; the output says how.

A failure stops at a safe point and says in one line what is live and what to do.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console

from astats_console import migrations, pitr_restore, pulumi_cli, restore
from astats_console.backups import launcher_of, run_ops, scheduler
from astats_console.engine import run_in
from astats_console.errors import ConsoleError, one_line
from astats_console.releases import Release, list_releases, live_backend_image, live_release
from astats_console.restore import Steps
from astats_console.stack import Stack

PIN = "astats:releases.pin"


@dataclass(frozen=True)
class RollbackRequest:
    release: str | None
    yes: bool = False
    restore_data: bool = False


@dataclass(frozen=True)
class Plan:
    target: Release
    live: Release | None
    live_head: str | None
    undo: list[migrations.Migration]
    restore_to: datetime | None
    """With --restore-data: the moment the data goes back to."""

    @property
    def irreversible(self) -> list[migrations.Migration]:
        return [m for m in self.undo if m.irreversible]

    def lines(self, now: datetime) -> list[str]:
        live = self.live.name if self.live else "not a recorded release"
        said = [
            f"roll back from {live} to release {self.target.name}",
            f"  backend  {self.target.backend_tag} ({self.target.backend_reference})",
            f"  frontend {self.target.frontend_tag} ({self.target.frontend_reference})",
        ]
        if not self.undo:
            said.append(f"  schema: stays at {self.live_head or '-'} (the release's head)")
        elif self.restore_to is not None:
            minutes = max(round((now - self.restore_to).total_seconds() / 60), 1)
            said.append(
                f"  schema: RESTORE DATA to {self.restore_to.isoformat(timespec='seconds')} "
                f"(before {self.irreversible[-1].file} ran): the writes of the last {minutes} "
                f"minute{'' if minutes == 1 else 's'} are lost"
            )
        else:
            files = ", ".join(m.file for m in self.undo)
            said.append(
                f"  schema: {self.live_head} -> {self.target.alembic_head or 'base'}: a verified "
                f"backup, then alembic downgrade undoes {files}; data written since is kept"
            )
        said.append(f"  pin: {PIN} (unpin: scripts/pulumi config rm --path {PIN}, then scripts/up)")
        return said


def choose(releases: list[Release], live: Release | None, wanted: str | None) -> Release:
    if not releases:
        raise ConsoleError("no release is recorded on this host (astats releases); nothing changed")
    if wanted:
        for release in releases:
            if release.name == wanted:
                if live is not None and release.name == live.name:
                    raise ConsoleError(f"release {wanted} is the live one; nothing changed")
                return release
        names = ", ".join(r.name for r in releases[:5])
        raise ConsoleError(f"no release {wanted!r} here (newest: {names}); nothing changed")
    older = releases[releases.index(live) + 1 :] if live in releases else releases[1:]
    for release in older:
        if live is None or (release.backend_image, release.frontend_image) != (
            live.backend_image,
            live.frontend_image,
        ):
            return release
    raise ConsoleError("no earlier release to go back to (astats releases); nothing changed")


def live_head(stack: Stack) -> str | None:
    heads, why = migrations.live_heads(stack)
    if heads is None:
        raise ConsoleError(f"cannot read the live Alembic head: {why}; nothing changed")
    return heads[0] if heads else None


def restore_point(releases: list[Release], target: Release) -> datetime | None:
    """The moment before the first release after `target` migrated: its pre-migration backup."""
    later = [r for r in releases if r.name > target.name]
    return later[-1].backup_at if later else None


def make_plan(stack: Stack, request: RollbackRequest) -> Plan:
    releases = list_releases(stack.client, stack.name)
    live = live_release(releases, live_backend_image(stack))
    target = choose(releases, live, request.release)
    head = live_head(stack)
    undo: list[migrations.Migration] = []
    if head != target.alembic_head and head is not None:
        backend = stack.running("backend", role="the backend")
        undo = migrations.between(backend, head, target.alembic_head)
    restore_to = None
    irreversible = [m for m in undo if m.irreversible]
    if irreversible and not request.restore_data:
        first = irreversible[-1]
        raise ConsoleError(
            f"refusing: migration {first.revision} ({first.file}) cannot be undone: "
            f"{first.irreversible}; --restore-data restores the data to before it ran "
            "(losing the writes since); nothing changed"
        )
    if request.restore_data and undo:
        restore_to = restore_point(releases, target)
        if restore_to is None:
            raise ConsoleError(
                f"no pre-migration backup is recorded after release {target.name}, so there is "
                "no point to restore the data to; nothing changed"
            )
    return Plan(target, live, head, undo, restore_to)


def ask_on_tty(lines: list[str]) -> bool:
    if not sys.stdin.isatty():
        return False
    sys.stderr.write("\n".join(lines) + "\nRoll back? Type 'rollback' to go on: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip() == "rollback"


def downgrade(stack: Stack, target_head: str | None, steps: Steps) -> None:
    job = scheduler(stack)
    steps.say("taking a verified backup first")
    taken = run_ops(job, ["backup", "--dest=/backups"])
    if not taken.ok:
        raise ConsoleError(
            f"the backup failed ({taken.error_text()}); nothing changed: the live release still "
            "runs on its schema"
        )
    steps.say(f"backup: {taken.stdout.strip().splitlines()[0]}")
    backend = stack.running("backend", role="the backend")
    steps.say(
        f"alembic downgrade {target_head or 'base'} (in the running backend, which has the scripts)"
    )
    result = run_in(backend, [*launcher_of(backend), "alembic", "downgrade", target_head or "base"])
    if not result.ok:
        raise ConsoleError(
            f"alembic downgrade failed: {result.error_text()}; the live release still runs; "
            f"the schema may be part way: check with astats psql, restore {taken.stdout.strip()} "
            "if needed"
        )


def pin_and_up(stack: Stack, target: Release, steps: Steps) -> None:
    project = pulumi_cli.project_dir()
    for key, value in (
        ("release", target.name),
        ("backendImage", target.backend_tag),
        ("frontendImage", target.frontend_tag),
    ):
        done = pulumi_cli.run_pulumi(
            project, ["config", "set", "--path", f"{PIN}.{key}", value], stack.name
        )
        if done.returncode != 0:
            raise ConsoleError(f"pulumi config set failed: {pulumi_cli.said(done)}")
    steps.say(f"pinned {PIN} to release {target.name}; pulumi up (backend and frontend replaced)")
    started = time.monotonic()
    up = pulumi_cli.run_pulumi(project, ["up", "--yes", "--skip-preview"], stack.name)
    if up.returncode != 0:
        raise ConsoleError(
            f"pulumi up failed: {pulumi_cli.said(up)}; the config pins release {target.name}: "
            "fix the cause and run scripts/up, or unpin (scripts/pulumi config rm --path "
            f"{PIN}) and run scripts/up"
        )
    steps.say(f"pulumi up done in {time.monotonic() - started:.1f} s")


def archives_wal(stack: Stack) -> bool:
    env = [
        str(e)
        for c in stack.containers("db")
        for e in (c.attrs.get("Config") or {}).get("Env") or []
    ]
    return any(e.startswith("PGBACKREST_STANZA=") for e in env)


def restore_data(stack: Stack, plan: Plan, console: Console, steps: Steps) -> None:
    """Back to `plan.restore_to`: point in time where the stack archives WAL, else the
    pre-migration dump taken then."""
    assert plan.restore_to is not None
    steps.say(f"restoring the data to {plan.restore_to.isoformat(timespec='seconds')}")
    if archives_wal(stack):
        code = pitr_restore.run_pitr_restore(
            stack, stack.client, pitr_restore.PitrRequest(target=plan.restore_to, yes=True), console
        )
    else:
        later = [r for r in list_releases(stack.client, stack.name) if r.name > plan.target.name]
        code = restore.run_restore(
            stack, restore.RestoreRequest(file=later[-1].backup, latest=False, yes=True), console
        )
    if code != 0:
        raise ConsoleError("the data restore failed (above); the live release still runs")


def run_rollback(
    stack: Stack,
    request: RollbackRequest,
    console: Console,
    confirm: Callable[[list[str]], bool] = ask_on_tty,
) -> int:
    steps = Steps(console)
    if not request.yes and not sys.stdin.isatty():
        raise ConsoleError(
            "refusing to roll back without confirmation: stdin is not a TTY, pass --yes; "
            "nothing changed"
        )
    plan = make_plan(stack, request)
    lines = plan.lines(datetime.now(UTC))
    for line in lines:
        console.print(line, markup=False, highlight=False)
    if not request.yes and not confirm(lines):
        raise ConsoleError("rollback not confirmed; nothing changed")
    try:
        if plan.restore_to is not None:
            restore_data(stack, plan, console, steps)
        elif plan.undo:
            downgrade(stack, plan.target.alembic_head, steps)
        pin_and_up(stack, plan.target, steps)
    except ConsoleError as exc:
        steps.say(one_line(str(exc)), style="bold red")
        return 1
    steps.say(
        f"done: release {plan.target.name} is live, pinned; to go forward again: "
        f"scripts/pulumi config rm --path {PIN} --stack {stack.name} && scripts/up {stack.name}",
        style="green",
    )
    return 0

"""The switch of a point-in-time restore: the stack moves to the restored volume through the
program, so a `pulumi preview` afterwards plans no change.

The stack's config names the volume (`database.restoredVolume`) and `pulumi up` replaces the
database (and the scheduler, which mounts the data read-only). The backend is stopped for just
that, and started again after. If `pulumi up` fails, the config goes back to what it was and
`pulumi up` runs again, so the stack is left on its previous volume.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from docker.models.containers import Container

from astats_console.errors import ConsoleError
from astats_console.pitr_repo import PGDATA
from astats_console.pulumi_cli import project_dir, run_pulumi, said
from astats_console.restore import STOP_GRACE_S, Steps, start_writers
from astats_console.stack import Stack

CONFIG_KEY = "astats:database.restoredVolume"


class SwitchedUnhealthyError(ConsoleError):
    """The database runs on the new volume, but the backend did not come back healthy."""


def database_settings(stack: str) -> dict[str, object]:
    """The stack's `astats:database` settings as its config gives them ({} when it cannot say)."""
    try:
        project = project_dir()
    except ConsoleError:
        return {}
    result = run_pulumi(project, ["config", "get", "astats:database", "--json"], stack)
    try:
        answer = json.loads(result.stdout) if result.returncode == 0 else {}
        # {"value": "<JSON text>", "objectValue": {...}, "secret": false}
        value = answer.get("objectValue") or json.loads(answer.get("value") or "{}")
    except (ValueError, AttributeError):
        return {}
    return value if isinstance(value, dict) else {}


RESTORED_SUFFIX = "$docker:index/volume:Volume::pgdata-restored"


def unprotect_restored(project: Path, stack: str, steps: Steps) -> None:
    """An earlier restore's volume is protected like the data volume; the new one takes its
    place in the stack (the old one is retained on the host), so its protection goes first."""
    exported = run_pulumi(project, ["stack", "export"], stack)
    try:
        resources = json.loads(exported.stdout)["deployment"].get("resources") or []
    except (ValueError, KeyError, TypeError):
        raise ConsoleError(
            f"pulumi stack export failed: {said(exported)}; nothing was switched"
        ) from None
    for resource in resources:
        urn = str(resource.get("urn", ""))
        if urn.endswith(RESTORED_SUFFIX) and resource.get("protect"):
            steps.say(
                f"unprotecting the earlier restore's volume in the state ({resource.get('id')})"
            )
            done = run_pulumi(project, ["state", "unprotect", urn, "--yes"], stack)
            if done.returncode != 0:
                raise ConsoleError(
                    f"pulumi state unprotect failed: {said(done)}; nothing was switched"
                )


def data_volume_of(container: Container) -> str | None:
    for mount in container.attrs.get("Mounts") or []:
        if mount.get("Destination") == PGDATA and mount.get("Name"):
            return str(mount["Name"])
    return None


def _set(project: Path, stack: str, value: str | None) -> subprocess.CompletedProcess[str]:
    if value is None:
        return run_pulumi(project, ["config", "rm", "--path", CONFIG_KEY], stack)
    return run_pulumi(project, ["config", "set", "--path", CONFIG_KEY, value], stack)


def switch_volume(stack: Stack, volume: str, steps: Steps) -> str:
    """Move the stack's database to `volume`; return the volume it ran on before."""
    project = project_dir()
    current = run_pulumi(project, ["config", "get", "--path", CONFIG_KEY], stack.name)
    previous = current.stdout.strip() if current.returncode == 0 else None
    servers = stack.containers("db")
    old = (
        (data_volume_of(servers[0]) if servers else None)
        or previous
        or f"astats-{stack.name}-pgdata"
    )
    unprotect_restored(project, stack.name, steps)
    writers = stack.containers("backend", running=True)
    for writer in writers:
        steps.say(f"stopping {writer.name} for the switch")
        writer.stop(timeout=STOP_GRACE_S)
    steps.say(f"pulumi config set {CONFIG_KEY} {volume}")
    result = _set(project, stack.name, volume)
    if result.returncode != 0:
        start_writers(writers, steps)
        raise ConsoleError(f"pulumi config set failed: {said(result)}; nothing was switched")
    started = time.monotonic()
    steps.say("pulumi up (the database and the scheduler move to the new volume)")
    up = run_pulumi(project, ["up", "--yes", "--skip-preview"], stack.name)
    if up.returncode != 0:
        why = said(up)
        steps.say(f"pulumi up failed: {why}; putting the config back", style="bold red")
        back = _set(project, stack.name, previous)
        again = (
            run_pulumi(project, ["up", "--yes", "--skip-preview"], stack.name)
            if back.returncode == 0
            else back
        )
        trouble = start_writers(writers, steps)
        if again.returncode != 0:
            raise ConsoleError(
                f"the switch failed ({why}) and so did going back ({said(again)}): the config "
                f"names {previous or 'the original volume'} again; run scripts/pulumi up"
            )
        left = f"; but {'; '.join(trouble)}" if trouble else ""
        raise ConsoleError(f"the switch failed ({why}); the stack is back on {old}{left}")
    steps.say(f"pulumi up done in {time.monotonic() - started:.1f} s")
    trouble = start_writers(writers, steps)
    if trouble:
        raise SwitchedUnhealthyError(
            f"the database runs on {volume} but the backend is not healthy: {'; '.join(trouble)} "
            "(see astats logs backend)"
        )
    return old

"""``astats releases``: what each rollout shipped, newest first.

A release is what components/files/record-release.sh labels once a rollout serves: one image
per app service, `astats-<stack>-<service>:release-<UTC time>`. Its labels carry the backend and
frontend image ids and references, the Alembic head and the pre-migration backup; Pulumi's
history (`pulumi stack history --json`, when the CLI is here) adds the update and its git
commit, matched by time. Nothing else is stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from docker.client import DockerClient
from docker.errors import DockerException
from docker.models.images import Image
from rich.console import Console
from rich.table import Table

from astats_console.errors import ConsoleError, one_line
from astats_console.stack import Stack

LABEL = "astats.release"
STAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Release:
    name: str
    """The UTC time it was recorded, `20261203T120000Z`: what `astats rollback` takes."""
    backend_tag: str
    frontend_tag: str
    backend_image: str
    frontend_image: str
    backend_reference: str
    frontend_reference: str
    alembic_head: str | None
    backup: str | None
    size_bytes: int = 0
    backend_marker_id: str = ""
    """The release image's own id (what a rolled-back backend runs)."""
    update: int | None = None
    commit: str | None = None

    @property
    def at(self) -> datetime:
        return datetime.strptime(self.name, STAMP).replace(tzinfo=UTC)

    @property
    def backup_at(self) -> datetime | None:
        """When its pre-migration backup was taken (its name says): the moment before this
        release's migration ran."""
        if not self.backup:
            return None
        stem = self.backup.rsplit("/", 1)[-1].rsplit(".", 1)[0].rsplit("-", 1)[-1]
        try:
            return datetime.strptime(stem, STAMP).replace(tzinfo=UTC)
        except ValueError:
            return None

    def runs(self, backend_image: str | None) -> bool:
        """Whether a backend running `backend_image` runs this release."""
        return backend_image is not None and backend_image in (
            self.backend_image,
            self.backend_marker_id,
        )

    def to_json(self, live: bool) -> dict[str, Any]:
        return {
            "name": self.name,
            "at": self.at.isoformat(),
            "live": live,
            "backend": {
                "image": self.backend_image,
                "reference": self.backend_reference,
                "release_image": self.backend_tag,
            },
            "frontend": {
                "image": self.frontend_image,
                "reference": self.frontend_reference,
                "release_image": self.frontend_tag,
            },
            "alembic_head": self.alembic_head,
            "pre_migration_backup": self.backup,
            "update": self.update,
            "commit": self.commit,
        }


def _labels(image: Image) -> dict[str, str]:
    return dict((image.attrs.get("Config") or {}).get("Labels") or {})


def list_releases(client: DockerClient, stack: str) -> list[Release]:
    """Newest first."""
    try:
        backends = client.images.list(
            filters={"label": [f"astats.stack={stack}", f"{LABEL}.service=backend"]}
        )
        frontends = client.images.list(
            filters={"label": [f"astats.stack={stack}", f"{LABEL}.service=frontend"]}
        )
    except DockerException as exc:
        raise ConsoleError(f"cannot list the release images: {one_line(str(exc))}") from exc
    frontend_tags: dict[str, str] = {}
    for image in frontends:
        for tag in image.tags:
            if tag.startswith(f"astats-{stack}-frontend:release-"):
                frontend_tags[tag.rsplit("release-", 1)[1]] = tag
    releases = []
    for image in backends:
        for tag in image.tags:
            if not tag.startswith(f"astats-{stack}-backend:release-"):
                continue
            name = tag.rsplit("release-", 1)[1]
            labels = _labels(image)
            if labels.get(LABEL) != name:
                # A release image built FROM another keeps the other's labels only when
                # its own are missing: trust the tag's own record alone.
                continue
            releases.append(
                Release(
                    name=name,
                    backend_tag=tag,
                    frontend_tag=frontend_tags.get(name, ""),
                    backend_image=labels.get(f"{LABEL}.backend-image", ""),
                    frontend_image=labels.get(f"{LABEL}.frontend-image", ""),
                    backend_reference=labels.get(f"{LABEL}.backend-reference", ""),
                    frontend_reference=labels.get(f"{LABEL}.frontend-reference", ""),
                    alembic_head=labels.get(f"{LABEL}.alembic-head") or None,
                    backup=labels.get(f"{LABEL}.backup") or None,
                    size_bytes=int(image.attrs.get("Size") or 0),
                    backend_marker_id=str(image.id),
                )
            )
    return sorted(releases, key=lambda r: r.name, reverse=True)


def with_history(releases: list[Release], history: list[dict[str, Any]]) -> list[Release]:
    """Each release with the Pulumi update that recorded it (its time falls within the
    update's) and that update's git commit, where the engine recorded one."""
    spans = []
    # Newest first; the file backend numbers every update 0, so count them here instead.
    for index, entry in enumerate(history):
        try:
            start = datetime.fromisoformat(str(entry["startTime"]).replace("Z", "+00:00"))
            end = datetime.fromisoformat(
                str(entry.get("endTime") or entry["startTime"]).replace("Z", "+00:00")
            )
        except (KeyError, ValueError):
            continue
        environment = entry.get("environment") or {}
        spans.append((start, end, len(history) - index, environment.get("git.head")))
    matched = []
    for release in releases:
        found = next(
            (
                (v, c)
                for s, e, v, c in spans
                if s.timestamp() - 1 <= release.at.timestamp() <= e.timestamp() + 1
            ),
            (None, None),
        )
        matched.append(replace(release, update=found[0], commit=found[1]))
    return matched


def live_backend_image(stack: Stack) -> str | None:
    running = stack.containers("backend", running=True)
    return str(running[-1].attrs.get("Image")) if running else None


def live_release(releases: list[Release], backend_image: str | None) -> Release | None:
    return next((r for r in releases if r.runs(backend_image)), None)


def history(stack: str) -> list[dict[str, Any]]:
    """`pulumi stack history --json`, or nothing when the CLI cannot say."""
    from astats_console.pulumi_cli import project_dir, run_pulumi

    try:
        project = project_dir()
    except ConsoleError:
        return []
    result = run_pulumi(project, ["stack", "history", "--json"], stack)
    try:
        parsed = json.loads(result.stdout) if result.returncode == 0 else []
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else []


def show_releases(stack: Stack, out: Console, *, as_json: bool) -> int:
    found = with_history(list_releases(stack.client, stack.name), history(stack.name))
    live = live_release(found, live_backend_image(stack))
    if as_json:
        out.print_json(json.dumps([r.to_json(r == live) for r in found]))
        return 0
    if not found:
        out.print(f"no release of stack {stack.name!r} is recorded on this host")
        return 0
    table = Table(title=f"releases of stack {stack.name}, newest first")
    for column in ("RELEASE", "", "BACKEND", "FRONTEND", "ALEMBIC HEAD", "UPDATE", "COMMIT"):
        table.add_column(column)
    for r in found:
        table.add_row(
            r.name,
            "live" if r == live else "",
            f"{short_id(r.backend_image)} {r.backend_reference}",
            f"{short_id(r.frontend_image)} {r.frontend_reference}",
            r.alembic_head or "-",
            str(r.update) if r.update is not None else "-",
            (r.commit or "-")[:12],
        )
    out.print(table)
    out.print(
        f"{len(found)} releases kept on this host (releases.keep); roll back with astats rollback"
    )
    return 0


def short_id(image: str) -> str:
    return image.removeprefix("sha256:")[:12]


def _layers(client: DockerClient, reference: str) -> dict[tuple[object, ...], int]:
    """An image's layers that hold bytes, each known by the build step that made it (its
    time, instruction and size: the same in every image that shares it), with its size."""
    history = client.images.get(reference).history()
    return {
        (step.get("Created"), step.get("CreatedBy"), step.get("Size")): int(step["Size"])
        for step in history
        if int(step.get("Size") or 0) > 0
    }


def layers_bytes(client: DockerClient, kept: list[str], running: list[str]) -> int:
    """The bytes of the layers the `kept` images hold that no `running` image has: what
    removing them would free."""
    held: dict[tuple[object, ...], int] = {}
    for reference in kept:
        held |= _layers(client, reference)
    for reference in running:
        for layer in _layers(client, reference):
            held.pop(layer, None)
    return sum(held.values())

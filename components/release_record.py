"""Releases: each rollout that changes the backend or the frontend is recorded as labelled
images (components/files/record-release.sh) once nginx serves it. Pulumi's own history
(`pulumi stack history`) has the rest: when, and the git commit. `astats releases` joins the
two; `astats rollback` runs a release's images again through `releases.pin`."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_command as command

from components.config import ReleaseSettings

SCRIPT = Path(__file__).parent / "files" / "record-release.sh"


@dataclass(frozen=True, kw_only=True)
class ReleaseImages:
    backend: pulumi.Input[str]
    """The image id the backend runs."""
    backend_reference: str
    frontend: pulumi.Input[str]
    frontend_reference: str


def record_release(
    owner: pulumi.Resource,
    *,
    stack: str,
    settings: ReleaseSettings,
    images: ReleaseImages,
    backup: pulumi.Input[str],
    db_user: str,
    db_name: str,
    after: list[pulumi.Resource],
) -> command.local.Command:
    """Runs when either image changes, after `after` (the services serving it)."""
    return command.local.Command(
        "release",
        create=shlex.join(
            ["/bin/sh", "-c", SCRIPT.read_text(), "record-release", stack, str(settings.keep)]
        ),
        environment={
            "BACKEND_IMAGE": images.backend,
            "BACKEND_REFERENCE": images.backend_reference,
            "FRONTEND_IMAGE": images.frontend,
            "FRONTEND_REFERENCE": images.frontend_reference,
            "BACKUP": backup,
            "DB_USER": db_user,
            "DB_NAME": db_name,
        },
        triggers=[images.backend, images.frontend],
        opts=pulumi.ResourceOptions(parent=owner, depends_on=after),
    )

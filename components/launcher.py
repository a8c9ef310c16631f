"""The launcher application containers start through: secrets from files, then the service."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pulumi

from components.container import Files

SECRETS_DIR = "/run/secrets"
LAUNCHER_SOURCE = Path(__file__).parent / "files" / "launch.sh"
SHARED_DIR_ENV = "ASTATS_SHARED_DIR"
"""A directory the service shares with its group (see launch.sh)."""


def launcher_entrypoint() -> list[str]:
    """The launcher as the entrypoint's own script (`sh -c`), so it needs no file in the
    container: the service's command follows as its arguments."""
    return ["/bin/sh", "-c", LAUNCHER_SOURCE.read_text(), "launch"]


def launcher_files(secrets: Mapping[str, pulumi.Output[str]]) -> Files | None:
    """One file per secret, named after the variable it becomes; None without secrets."""
    if not secrets:
        return None
    return Files(
        SECRETS_DIR, {name: pulumi.Output.secret(value) for name, value in sorted(secrets.items())}
    )

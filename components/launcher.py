"""The launcher application containers start through: secrets from files, then the service."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pulumi

from components.container import Upload

SECRETS_DIR = "/run/secrets"
LAUNCHER_PATH = "/run/astats/launch"
LAUNCHER_SOURCE = Path(__file__).parent / "files" / "launch.sh"


def launcher_entrypoint() -> list[str]:
    return ["/bin/sh", LAUNCHER_PATH]


def launcher_uploads(secrets: Mapping[str, pulumi.Output[str]]) -> list[Upload]:
    """The launcher plus one file per secret, named after the variable it becomes."""
    files = [
        Upload(f"{SECRETS_DIR}/{name}", pulumi.Output.secret(value))
        for name, value in sorted(secrets.items())
    ]
    return [Upload(LAUNCHER_PATH, LAUNCHER_SOURCE.read_text(), mode="0555"), *files]

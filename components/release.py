"""The backend one rollout ships: the migration runs it first, then the backend serves it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.config import BackendSettings
from components.endpoint import DatabaseEndpoint


@dataclass(frozen=True, kw_only=True)
class BackendRelease:
    """The backend one rollout ships: its settings, its image, and the database it migrates
    and then serves."""

    settings: BackendSettings
    image: pulumi.Input[str]
    database: DatabaseEndpoint

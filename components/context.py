"""What every service of one stack shares: the stack's name, its networks and volumes, log
rotation, and how long a web service keeps serving after its stop."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.config import LoggingSettings, StackSettings


@dataclass(frozen=True)
class NetworkNames:
    edge: pulumi.Input[str]
    """nginx, frontend and backend; the way out for offsite copies and alerts."""
    data: pulumi.Input[str]
    """The database and whoever talks to it; internal, no route out."""


@dataclass(frozen=True)
class VolumeNames:
    pgdata: pulumi.Input[str]
    backups: pulumi.Input[str]
    backend_logs: pulumi.Input[str]


def docker_name(stack: str, role: str) -> str:
    """`astats-<stack>-<role>`: how the stack's networks, volumes, images and jobs are named."""
    return f"astats-{stack}-{role}"


def drain_seconds(settings: StackSettings) -> int:
    # An old backend or frontend keeps serving after its stop until nginx has re-resolved
    # the name to the replacement (its DNS cache counts whole seconds: valid + 1).
    return settings.nginx.resolver_valid_s + 2


@dataclass(frozen=True)
class StackContext:
    name: str
    """The stack (dev, staging, prod): part of every Docker name and the `astats.stack` label."""
    networks: NetworkNames
    volumes: VolumeNames
    logging: LoggingSettings
    drain_s: int
    """Seconds a web service keeps serving after a stop, so nginx can move on first."""

    @classmethod
    def of(
        cls, name: str, settings: StackSettings, networks: NetworkNames, volumes: VolumeNames
    ) -> StackContext:
        return cls(name, networks, volumes, settings.logging, drain_seconds(settings))

    def docker_name(self, role: str) -> str:
        return docker_name(self.name, role)

"""The one place where a service becomes a `docker.Container` with the operators' defaults,
and what every service of one stack shares (`StackContext`).

Every long-running container gets the contract labels, json-file log rotation, a restart policy,
a memory and cpu limit, `no-new-privileges`, and a healthcheck that `pulumi up` waits for, with a
`wait_timeout` sized from the healthcheck's own budget so slow starts do not fail a rollout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pulumi
import pulumi_docker as docker

from components.config import Healthcheck, LoggingSettings, StackSettings
from components.docker_values import docker_cpus, docker_duration

WAIT_MARGIN_S = 30
RESTART_POLICY = "unless-stopped"
STOP_GRACE_S = 30


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
    upstreams: pulumi.Input[str]
    """Which container each of nginx's upstreams reaches (components/switch.py)."""
    assets: pulumi.Input[str]
    """The frontend's static files of recent releases, served by nginx."""


def docker_name(stack: str, role: str) -> str:
    """`astats-<stack>-<role>`: how the stack's networks, volumes, images and jobs are named."""
    return f"astats-{stack}-{role}"


@dataclass(frozen=True)
class StackContext:
    """What every service of one stack is given besides its own settings and inputs."""

    name: str
    """The stack (dev, staging, prod): part of every Docker name and the `astats.stack` label."""
    networks: NetworkNames
    volumes: VolumeNames
    logging: LoggingSettings

    @classmethod
    def of(
        cls, name: str, settings: StackSettings, networks: NetworkNames, volumes: VolumeNames
    ) -> StackContext:
        return cls(name, networks, volumes, settings.logging)

    def docker_name(self, role: str) -> str:
        return docker_name(self.name, role)


@dataclass(frozen=True)
class Attachment:
    """A network the container joins, with the DNS aliases it answers to there."""

    network: pulumi.Input[str]
    aliases: Sequence[str] = ()


@dataclass(frozen=True)
class Mount:
    """A named volume mounted into the container."""

    volume: pulumi.Input[str]
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Upload:
    """A file written into the container before it starts (configs, secret files)."""

    path: str
    content: pulumi.Input[str]
    mode: str = "0444"


class Limits(Protocol):
    """What every service's settings slice sets: its memory and cpu limit."""

    @property
    def memory_mb(self) -> int: ...

    @property
    def cpus(self) -> float: ...


@dataclass(frozen=True)
class ServiceSpec:
    """What differs between services; everything else is decided by `service_container`."""

    service: str
    image: pulumi.Input[str]
    limits: Limits
    health_test: Sequence[str]
    healthcheck: Healthcheck
    command: Sequence[pulumi.Input[str]] = ()
    entrypoint: Sequence[str] = ()
    envs: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    networks: Sequence[Attachment] = ()
    mounts: Sequence[Mount] = ()
    uploads: Sequence[Upload] = ()
    host_ports: Sequence[tuple[str, int, int]] = ()
    """(bind address, host port, container port)"""
    exclusive: bool = False
    """At most one instance may run at once (a data directory, a scheduler)."""
    shm_size_mb: int | None = None
    user: str | None = None


def wait_timeout_s(healthcheck: Healthcheck) -> int:
    """How long `pulumi up` waits for "healthy": the check's whole budget plus a margin."""
    return healthcheck.budget_s + WAIT_MARGIN_S


def contract_labels(stack: str, service: str | None = None) -> dict[str, str]:
    """The labels operators' tools find a stack's containers, jobs, volumes and networks by."""
    return {"astats.stack": stack} | ({"astats.service": service} if service is not None else {})


def loopback_port(host_port: int | None, port: int) -> list[tuple[str, int, int]]:
    """A port published on the host's loopback for debugging, when one is configured."""
    return [("127.0.0.1", host_port, port)] if host_port else []


def service_container(
    owner: pulumi.Resource,
    stack: StackContext,
    spec: ServiceSpec,
    *,
    name: str | None = None,
    after: Sequence[pulumi.Resource] = (),
) -> docker.Container:
    """Register the container for `spec` as a child of `owner`, started once `after` is done;
    its logical name is the service's unless `name` is given."""
    check = spec.healthcheck
    envs = dict(spec.envs)
    # Containers with a host port, or that must never run twice (a data directory, a
    # scheduler), are removed before their replacement starts; the rest are replaced
    # create-before-delete, so a healthy successor exists before the old one goes.
    exclusive = spec.exclusive or bool(spec.host_ports)
    options = pulumi.ResourceOptions(
        parent=owner,
        depends_on=list(after),
        delete_before_replace=exclusive,
        # The upstream provider has been seen to ignore healthcheck edits in place.
        replace_on_changes=["healthcheck"],
    )
    return docker.Container(
        name or spec.service,
        image=spec.image,
        command=list(spec.command) or None,
        entrypoints=list(spec.entrypoint) or None,
        envs=[pulumi.Output.concat(k, "=", v) for k, v in sorted(envs.items())] or None,
        labels=[
            docker.ContainerLabelArgs(label=k, value=v)
            for k, v in sorted(contract_labels(stack.name, spec.service).items())
        ],
        restart=RESTART_POLICY,
        memory=spec.limits.memory_mb,
        memory_swap=spec.limits.memory_mb,
        cpus=docker_cpus(spec.limits.cpus),
        shm_size=spec.shm_size_mb,
        user=spec.user,
        security_opts=["no-new-privileges:true"],
        log_driver="json-file",
        log_opts={"max-size": stack.logging.max_size, "max-file": str(stack.logging.max_file)},
        healthcheck=docker.ContainerHealthcheckArgs(
            tests=list(spec.health_test),
            interval=docker_duration(check.interval_s),
            timeout=docker_duration(check.timeout_s),
            retries=check.retries,
            start_period=docker_duration(check.start_period_s),
        ),
        wait=True,
        wait_timeout=wait_timeout_s(check),
        destroy_grace_seconds=STOP_GRACE_S,
        networks_advanced=[
            docker.ContainerNetworksAdvancedArgs(name=a.network, aliases=list(a.aliases) or None)
            for a in spec.networks
        ],
        volumes=[
            docker.ContainerVolumeArgs(
                volume_name=m.volume, container_path=m.target, read_only=m.read_only
            )
            for m in spec.mounts
        ]
        or None,
        uploads=[
            docker.ContainerUploadArgs(file=u.path, content=u.content, permissions=u.mode)
            for u in spec.uploads
        ]
        or None,
        ports=[
            docker.ContainerPortArgs(ip=ip, external=host, internal=inner)
            for ip, host, inner in spec.host_ports
        ]
        or None,
        opts=options,
    )

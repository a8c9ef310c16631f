"""The one place where a service becomes a `docker.Container` with the operators' defaults,
and what every service of one stack shares (`StackContext`).

Every long-running container gets the contract labels, json-file log rotation, a restart policy,
a memory and cpu limit, `no-new-privileges`, and a healthcheck that `pulumi up` waits for, with a
`wait_timeout` sized from the healthcheck's own budget so slow starts do not fail a rollout.

And the least privilege (docs/security.md): a read-only root file system with a sized, noexec
`tmpfs` only where the service writes; every capability dropped, the few a service needs added
back, each with its reason; a PIDs limit; the user each service names. The engine refuses to copy
files into a read-only container (the provider's `uploads`), so what a service reads at start
(secrets, a config) is written into a volume of its own by a host-driven step (`Files`).
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.config import Healthcheck, LoggingSettings, StackSettings
from components.docker_values import docker_cpus, docker_duration

WAIT_MARGIN_S = 30
RESTART_POLICY = "unless-stopped"
STOP_GRACE_S = 30
# A throwaway step only moves files between its image and one volume, through a shell.
THROWAWAY_PIDS_LIMIT = 64
THROWAWAY_MEMORY_MB = 64
WRITE_FILES_SCRIPT = (Path(__file__).parent / "files" / "write-files.sh").read_text()
WRITE_FILES_MOUNT = "/astats-files"
FILES_LABEL = "astats.files"
# pulumi-docker 5 has no PIDs limit for a container: `docker update` sets it once the
# container runs, and Docker keeps it across restarts.
PIDS_LIMIT_COMMAND = 'docker update --pids-limit="$PIDS_LIMIT" "$CONTAINER"'


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
    certs: pulumi.Input[str] | None = None
    """The ACME client's account, certificates and status (tls.mode acme)."""
    acme_webroot: pulumi.Input[str] | None = None
    """The HTTP-01 challenge files nginx serves for the ACME client (tls.mode acme)."""
    pgbackrest: pulumi.Input[str] = ""
    """pgBackRest's repository and spool: archived WAL and physical backups."""
    pgsocket: pulumi.Input[str] = ""
    """The database's socket directory, shared with the scheduler for pgBackRest."""


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
class Files:
    """What a container reads at start (its secrets, a config): files in `directory`, a volume
    of the service's own that the container mounts read-only."""

    directory: str
    contents: Mapping[str, pulumi.Input[str]]
    """Each file's content by its name; secret Outputs stay secret (the step's stdin)."""


@dataclass(frozen=True)
class Tmpfs:
    """A writable directory in memory on the read-only root file system, where the service
    writes scratch files. Sized: what it holds counts against the container's memory."""

    path: str
    size_mb: int
    owner: str | None = None
    """`uid:gid` owning it, for a directory the image has (whose mode it keeps): Docker mounts
    it as root's otherwise."""

    def options(self) -> str:
        # Nothing in the stack runs a program from its scratch space.
        uid, _, gid = (self.owner or "").partition(":")
        owner = f"uid={uid},gid={gid}," if self.owner else ""
        return f"rw,noexec,nosuid,nodev,{owner}size={self.size_mb}m"


class Limits(Protocol):
    """What every service's settings slice sets: its memory, cpu and PIDs limit."""

    @property
    def memory_mb(self) -> int: ...

    @property
    def cpus(self) -> float: ...

    @property
    def pids_limit(self) -> int: ...


@dataclass(frozen=True, kw_only=True)
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
    files: Files | None = None
    host_ports: Sequence[tuple[str, int, int]] = ()
    """(bind address, host port, container port)"""
    exclusive: bool = False
    """At most one instance may run at once (a data directory, a scheduler)."""
    shm_size_mb: int | None = None
    user: str
    """Who the service runs as: never root (docs/security.md)."""
    tmpfs: Sequence[Tmpfs] = ()
    """The only writable places besides the volumes."""
    capabilities: Mapping[str, str] = field(default_factory=dict)
    """Capabilities added back after all are dropped, each with the reason it is needed."""
    group_add: Sequence[str] = ()
    """Supplementary groups (gids), for files another service shares with its group."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels beyond the stack's own, for operators' tools (the console reads them)."""
    init: bool = False
    """Run Docker's init as PID 1, to reap processes orphaned to it: a server that is PID 1
    itself (PostgreSQL) takes an unknown child's exit for a crash of its own."""


@dataclass(frozen=True)
class Running:
    """A service's container, and the step that put its PIDs limit in place."""

    container: docker.Container
    pids_limit: command.local.Command


def wait_timeout_s(healthcheck: Healthcheck) -> int:
    """How long `pulumi up` waits for "healthy": the check's whole budget plus a margin."""
    return healthcheck.budget_s + WAIT_MARGIN_S


def contract_labels(stack: str, service: str | None = None) -> dict[str, str]:
    """The labels operators' tools find a stack's containers, jobs, volumes and networks by."""
    return {"astats.stack": stack} | ({"astats.service": service} if service is not None else {})


def loopback_port(host_port: int | None, port: int) -> list[tuple[str, int, int]]:
    """A port published on the host's loopback for debugging, when one is configured."""
    return [("127.0.0.1", host_port, port)] if host_port else []


def throwaway_run(
    stack: str,
    service: str,
    image: str,
    volume: str,
    target: str,
    *,
    read_only: bool = False,
    user: str = "0:0",
    capabilities: Sequence[str] = (),
) -> list[str]:
    """`docker run` of a step's shell in `image` with one volume at `target`, stdin open: no
    network, a read-only root, no capability but `capabilities`. A step only moves files
    between the image, its stdin and the volume; root by default, which owns a fresh volume."""
    mount = f"--volume={volume}:{target}" + (":ro" if read_only else "")
    return [
        "docker",
        "run",
        "--rm",
        "--interactive",
        "--network=none",
        f"--user={user}",
        "--read-only",
        "--cap-drop=ALL",
        *[f"--cap-add={name}" for name in capabilities],
        f"--pids-limit={THROWAWAY_PIDS_LIMIT}",
        f"--memory={THROWAWAY_MEMORY_MB}m",
        "--security-opt=no-new-privileges:true",
        *[f"--label={k}={v}" for k, v in sorted(contract_labels(stack, service).items())],
        mount,
        "--entrypoint=/bin/sh",
        image,
    ]


def files_stdin(contents: Mapping[str, str]) -> str:
    """What the files step reads: a line per file, its name and its content in base64."""
    return "".join(
        f"{name} {base64.b64encode(text.encode()).decode()}\n"
        for name, text in sorted(contents.items())
    )


def write_files_command(stack: str, service: str, image: str, volume: str) -> str:
    """The host's shell line that writes a service's files into its files volume."""
    run = throwaway_run(stack, service, image, volume, WRITE_FILES_MOUNT)
    return shlex.join([*run, "-c", WRITE_FILES_SCRIPT, "write-files", WRITE_FILES_MOUNT])


def write_files(
    owner: pulumi.Resource,
    stack: StackContext,
    spec: ServiceSpec,
    files: Files,
    *,
    name: str,
    after: Sequence[pulumi.Resource],
) -> tuple[docker.Volume, command.local.Command]:
    """The volume holding `files` and the step that writes them, once `after` is done; the
    step prints a new revision each time it runs."""
    volume = docker.Volume(
        f"{name}-files",
        name=stack.docker_name(f"{spec.service}-files"),
        # Marked as a files volume: it holds no data, each rollout may rewrite it.
        labels=[
            docker.VolumeLabelArgs(label=k, value=v)
            for k, v in sorted(
                {**contract_labels(stack.name, spec.service), FILES_LABEL: "true"}.items()
            )
        ],
        opts=pulumi.ResourceOptions(parent=owner),
    )
    contents = pulumi.Output.all(**dict(files.contents)).apply(files_stdin)
    script = pulumi.Output.all(spec.image, volume.name).apply(
        lambda args: write_files_command(stack.name, spec.service, args[0], args[1])
    )
    step = command.local.Command(
        f"{name}-write-files",
        create=script,
        stdin=contents,
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[volume, *after]),
    )
    return volume, step


def apply_pids_limit(
    owner: pulumi.Resource, container: docker.Container, limit: int, *, name: str
) -> command.local.Command:
    """Put `limit` on `container` once it runs (and on each replacement)."""
    return command.local.Command(
        f"{name}-pids-limit",
        create=PIDS_LIMIT_COMMAND,
        environment={"CONTAINER": container.id, "PIDS_LIMIT": str(limit)},
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[container]),
    )


def service_container(
    owner: pulumi.Resource,
    stack: StackContext,
    spec: ServiceSpec,
    *,
    name: str | None = None,
    after: Sequence[pulumi.Resource] = (),
) -> Running:
    """Register the container for `spec` as a child of `owner`, started once `after` is done,
    and its PIDs limit; its logical name is the service's unless `name` is given."""
    logical = name or spec.service
    check = spec.healthcheck
    envs = dict(spec.envs)
    labels: dict[str, pulumi.Input[str]] = {
        **spec.labels,
        **contract_labels(stack.name, spec.service),
    }
    mounts = list(spec.mounts)
    waits = list(after)
    if spec.files is not None:
        volume, written = write_files(owner, stack, spec, spec.files, name=logical, after=after)
        mounts.append(Mount(volume.name, spec.files.directory, read_only=True))
        # New contents replace the container, as a changed upload did.
        labels[FILES_LABEL] = written.stdout
        waits.append(written)
    # Containers with a host port, or that must never run twice (a data directory, a
    # scheduler), are removed before their replacement starts; the rest are replaced
    # create-before-delete, so a healthy successor exists before the old one goes.
    exclusive = spec.exclusive or bool(spec.host_ports)
    options = pulumi.ResourceOptions(
        parent=owner,
        depends_on=waits,
        delete_before_replace=exclusive,
        # The upstream provider has been seen to ignore healthcheck edits in place.
        replace_on_changes=["healthcheck"],
    )
    container = docker.Container(
        logical,
        image=spec.image,
        command=list(spec.command) or None,
        entrypoints=list(spec.entrypoint) or None,
        envs=[pulumi.Output.concat(k, "=", v) for k, v in sorted(envs.items())] or None,
        labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
        restart=RESTART_POLICY,
        memory=spec.limits.memory_mb,
        memory_swap=spec.limits.memory_mb,
        cpus=docker_cpus(spec.limits.cpus),
        shm_size=spec.shm_size_mb,
        init=spec.init or None,
        user=spec.user,
        group_adds=list(spec.group_add) or None,
        read_only=True,
        tmpfs={t.path: t.options() for t in spec.tmpfs} or None,
        capabilities=docker.ContainerCapabilitiesArgs(
            drops=["ALL"], adds=sorted(spec.capabilities) or None
        ),
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
            for m in mounts
        ]
        or None,
        ports=[
            docker.ContainerPortArgs(ip=ip, external=host, internal=inner)
            for ip, host, inner in spec.host_ports
        ]
        or None,
        opts=options,
    )
    limited = apply_pids_limit(owner, container, spec.limits.pids_limit, name=logical)
    return Running(container, limited)

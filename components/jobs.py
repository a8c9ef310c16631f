"""One-shot jobs (pre-migration backup, migration) as `docker run` command lines.

A job is run by pulumi-command rather than as a `docker.Container`: a container with
`attach`/`must_run=False` records a non-zero exit code without failing the rollout, while a
command's non-zero exit fails `pulumi up` with the job's own output and leaves nothing in state,
so the next `up` tries again.

A job runs as least privileged as a service (docs/security.md): its user, a read-only root file
system with a `tmpfs` for its scratch files, no capability, a PIDs and a memory limit.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command

from components.container import Tmpfs, contract_labels, docker_name

# Reads one line (the secret) from stdin into the variable named by $0, then execs the job:
# the secret never appears in an argument list, the container's configuration, or the state.
SECRET_FROM_STDIN = (
    'IFS= read -r value || [ -n "$value" ]; export "$0=$value"; unset value; exec "$@"'
)


@dataclass(frozen=True)
class JobSpec:
    stack: str
    name: str
    """Fixed container name: a second run of the same job cannot start while one runs."""
    service: str
    image: pulumi.Input[str]
    network: pulumi.Input[str]
    command: Sequence[str]
    memory_mb: int
    secret_env: str
    """Name of the variable that receives the secret sent on stdin."""
    user: str
    """Never root: the image's own unprivileged user, or the service's."""
    pids_limit: int
    envs: Mapping[str, str] = field(default_factory=dict)
    volumes: Sequence[tuple[pulumi.Input[str], str]] = ()
    tmpfs: Sequence[Tmpfs] = ()


def docker_run_argv(job: JobSpec, image: str, network: str, volumes: Sequence[str]) -> list[str]:
    """The `docker run` argument list for `job`, once its image, network and volumes are known."""
    argv = [
        "docker",
        "run",
        "--rm",
        "--interactive",
        f"--name={docker_name(job.stack, job.name)}",
        f"--network={network}",
        f"--memory={job.memory_mb}m",
        f"--pids-limit={job.pids_limit}",
        f"--user={job.user}",
        "--read-only",
        *[f"--tmpfs={t.path}:{t.options()}" for t in job.tmpfs],
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges:true",
    ]
    argv += [f"--label={k}={v}" for k, v in sorted(contract_labels(job.stack, job.service).items())]
    argv += [f"--env={k}={v}" for k, v in sorted(job.envs.items())]
    argv += [
        f"--volume={name}:{target}" for name, (_, target) in zip(volumes, job.volumes, strict=True)
    ]
    argv += ["--entrypoint=/bin/sh", image, "-c", SECRET_FROM_STDIN, job.secret_env]
    return [*argv, *job.command]


def docker_run_command(job: JobSpec) -> pulumi.Output[str]:
    """The shell command that runs `job` to completion and exits with its status."""
    volume_names = [v for v, _ in job.volumes]
    return pulumi.Output.all(job.image, job.network, *volume_names).apply(
        lambda args: shlex.join(docker_run_argv(job, args[0], args[1], args[2:]))
    )


def job_command(
    owner: pulumi.Resource,
    job: JobSpec,
    secret: pulumi.Input[str],
    *,
    triggers: Sequence[pulumi.Input[str]],
    after: Sequence[pulumi.Resource],
) -> command.local.Command:
    """`job` as a child of `owner`, named as the job: it runs on create and on every replace
    (a change of `triggers`), once `after` is done, with `secret` as the line on its stdin."""
    return command.local.Command(
        job.name,
        create=docker_run_command(job),
        stdin=pulumi.Output.concat(secret, "\n"),
        triggers=list(triggers),
        opts=pulumi.ResourceOptions(parent=owner, depends_on=list(after)),
    )

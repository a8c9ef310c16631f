"""Certificates by ACME: the client's image (Debian's lego and docker/acme/acme.sh), what its
container is given, and the step that puts a placeholder pair in place before nginx starts.

The client writes `current/fullchain.pem` and `current/privkey.pem` into the certs volume
(`current` is a symlink swapped with one rename, so nginx never reads half a pair) and the
HTTP-01 challenges into the webroot volume, which nginx serves at `/.well-known/acme-challenge/`.
It needs no Docker socket: nginx picks a new certificate up by its own reload.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import pulumi
import pulumi_command as command

from components.config import AcmeSettings, BuildSettings, Healthcheck, StackSettings
from components.container import (
    Attachment,
    Files,
    Mount,
    ServiceSpec,
    StackContext,
    Tmpfs,
    throwaway_run,
)
from components.image import built_image

SERVICE = "acme"
CERTS_DIR = "/var/lib/astats-acme"
"""The certs volume: lego's account and data (lego/, 0700), the releases, `current`, status."""
WEBROOT_DIR = "/srv/astats-acme"
"""The webroot volume: lego writes `.well-known/acme-challenge/<token>` there."""
CURRENT_DIR = f"{CERTS_DIR}/current"
FILES_DIR = "/run/astats-acme"
CA_FILE = f"{FILES_DIR}/directory-ca.pem"
"""The CA to trust for a private ACME directory (tls.acme.directoryCa), when there is one."""
# uid 10002 with gid 101, the group of nginx's user in the nginx image: nginx reads the pair
# (0640) through its group and nothing else of the volume (lego/ is 0700).
ACME_USER = "10002:101"
ACME_CONTEXT = "docker/acme"
PROGRAM = "/usr/local/bin/astats-acme"
# Long enough for a first issuance (an order, its challenges, nginx's reload onto the new pair):
# the first `pulumi up` waits for it, so it ends with a valid certificate in use.
ACME_HEALTHCHECK = Healthcheck(interval_s=10, timeout_s=10, retries=3, start_period_s=180)
# The loop captures nothing in /tmp; bash's here-strings spill into it past a pipe's size.
SCRATCH = (Tmpfs("/tmp", 4),)


def acme_image(
    name: str, *, stack: StackContext, settings: AcmeSettings, opts: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    """The client's image, built on `tls.acme.image`; its id."""
    return built_image(
        name,
        repository=stack.docker_name(SERVICE),
        build=BuildSettings(context=ACME_CONTEXT, args={"BASE_IMAGE": settings.image}),
        opts=opts,
    )


def acme_env(
    settings: StackSettings, served_address: pulumi.Input[str]
) -> dict[str, pulumi.Input[str]]:
    """What acme.sh reads; `served_address` is where nginx serves HTTPS on the Docker network
    (`<nginx container>:<port>`), which the health check asks for the certificate in use."""
    acme = settings.tls.acme
    if acme.email is None:
        raise ValueError("tls.acme.email is unset: the config model requires it for acme")
    env: dict[str, pulumi.Input[str]] = {
        "ACME_DIRECTORY": acme.directory,
        "ACME_EMAIL": acme.email,
        "ACME_DOMAINS": " ".join(settings.tls_domains),
        "ACME_RENEW_BEFORE_DAYS": str(acme.renew_before_days),
        "ACME_CHECK_INTERVAL_S": str(acme.check_interval_minutes * 60),
        "ACME_RETRY_MIN_S": str(acme.retry_min_s),
        "ACME_RETRY_MAX_S": str(acme.retry_max_s),
        "ACME_SERVED_ADDRESS": served_address,
    }
    if acme.directory_ca is not None:
        env["ACME_CA_FILE"] = CA_FILE
    return env


def acme_files(settings: AcmeSettings) -> Files | None:
    """The CA to trust for a private directory, in the client's files volume; None without."""
    if settings.directory_ca is None:
        return None
    return Files(FILES_DIR, {CA_FILE.rsplit("/", 1)[1]: settings.directory_ca})


def health_test() -> list[str]:
    """Healthy once the current certificate is real, unexpired, covers the domains and is
    the one nginx serves; a failed renewal keeps it healthy while the certificate is valid."""
    return ["CMD", PROGRAM, "health"]


def acme_spec(
    stack: StackContext,
    settings: StackSettings,
    *,
    image: pulumi.Input[str],
    certs_volume: pulumi.Input[str],
    webroot_volume: pulumi.Input[str],
    served_address: pulumi.Input[str],
) -> ServiceSpec:
    """The client's container: on the edge network (the CA is outside, nginx is there), as
    10002:101, writing only to its two volumes and a small /tmp."""
    acme = settings.tls.acme
    return ServiceSpec(
        service=SERVICE,
        image=image,
        limits=acme,
        command=["run"],
        envs=acme_env(settings, served_address),
        files=acme_files(acme),
        mounts=[Mount(certs_volume, CERTS_DIR), Mount(webroot_volume, WEBROOT_DIR)],
        networks=[Attachment(stack.networks.edge)],
        health_test=health_test(),
        healthcheck=ACME_HEALTHCHECK,
        # Two loops would race for the account's rate limits and the `current` symlink.
        exclusive=True,
        user=ACME_USER,
        tmpfs=SCRATCH,
    )


def placeholder_argv(stack: str, image: str, volume: str) -> list[str]:
    """A throwaway run of the client's image that writes a self-signed pair into the certs
    `volume` unless a certificate is already current, so nginx can start before the first
    issuance."""
    run = throwaway_run(stack, SERVICE, image, volume, CERTS_DIR, user=ACME_USER)
    return [*run, "-c", f"exec {PROGRAM} placeholder"]


def placeholder_step(
    owner: pulumi.Resource,
    stack: StackContext,
    *,
    image: pulumi.Input[str],
    certs_volume: pulumi.Input[str],
    after: Sequence[pulumi.Resource],
) -> command.local.Command:
    """The placeholder's step; nginx, which serves `current`, starts after it."""
    line = pulumi.Output.all(image, certs_volume).apply(
        lambda args: shlex.join(placeholder_argv(stack.name, args[0], args[1]))
    )
    return command.local.Command(
        "acme-placeholder",
        create=line,
        opts=pulumi.ResourceOptions(parent=owner, depends_on=list(after)),
    )

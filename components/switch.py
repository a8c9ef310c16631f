"""The health-gated traffic switch: nginx reaches a backend or frontend only once it is healthy.

A web container joins the edge network under its own name and no shared alias, so Docker's DNS
never hands it traffic. nginx's upstream block for the service includes a file on the
`upstreams` volume naming exactly one container. After a new container passes its health check
(`pulumi up` waits for that), a pulumi-command step rewrites that file through the running nginx
and reloads it gracefully (components/files/switch-upstream.sh): new requests go to the new
container, the old workers finish theirs, and only then, at the end of the rollout, is the old
container stopped. A release that never becomes healthy never gets a request. Before nginx has
started (a first rollout) the step writes the file through a throwaway container instead.

The engine drives every step from the host (`docker exec`, `docker run`); no container gets the
Docker socket. docs/proxy.md explains the choice.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.container import StackContext, contract_labels, throwaway_run

FILES = Path(__file__).parent / "files"
SWITCH_SCRIPT = (FILES / "switch-upstream.sh").read_text()
PUBLISH_SCRIPT = (FILES / "publish-assets.sh").read_text()
UPSTREAM_DIR = "/etc/nginx/astats-upstreams"
ASSETS_DIR = "/srv/astats-assets"
NGINX_USER = "101:101"
"""The official nginx image's `nginx` user: nginx runs as it, and it owns the upstream files,
which the switch rewrites as nginx's own user (so `nginx -s reload` may signal the master)."""


def nginx_filters(stack: str) -> list[str]:
    return [f"--filter=label={k}={v}" for k, v in contract_labels(stack, "nginx").items()]


def handover(stack: str, service: str, image: str, volume: str) -> list[str]:
    """A throwaway step that hands the upstream files to nginx's user: a fresh volume is root's,
    and so are the files an nginx of before this user change wrote."""
    # CHOWN: changing a file's owner is all this step does; root without it cannot.
    run = throwaway_run(stack, service, image, volume, UPSTREAM_DIR, capabilities=["CHOWN"])
    return [*run, "-c", 'chown -R "$0" "$1"', NGINX_USER, UPSTREAM_DIR]


def switch_script(stack: str, service: str, image: str, volume: str, *, servers: str) -> str:
    """The host's shell line that points `service`'s upstream at `servers` (`server a:p;`)."""
    in_nginx = ["/bin/sh", "-c", SWITCH_SCRIPT, "switch-upstream", service]
    running = ["docker", "ps", "--quiet", "--filter=status=running", *nginx_filters(stack)]
    before_start = throwaway_run(stack, service, image, volume, UPSTREAM_DIR, user=NGINX_USER)
    hand_over = shlex.join(handover(stack, service, image, volume))
    writable = ["test", "-w", UPSTREAM_DIR]
    return "\n".join(
        [
            "set -eu",
            f"servers={shlex.quote(servers)}",
            f"nginx=$({shlex.join(running)})",
            'if [ -z "$nginx" ]; then',
            f"  {hand_over}",
            f'  printf "%s\\n" "$servers" | {shlex.join([*before_start, *in_nginx[1:]])}',
            "  exit 0",
            "fi",
            # `docker exec` runs as the container's user, the master's: nginx's own user, or
            # root for an nginx started before it ran unprivileged.
            "for id in $nginx; do",
            f'  docker exec "$id" {shlex.join(writable)} || {hand_over}',
            f'  printf "%s\\n" "$servers" | docker exec --interactive "$id" {shlex.join(in_nginx)}',
            "done",
        ]
    )


def publish_script(stack: str, image: str, volume: str, static_dir: str, keep: int) -> str:
    """The host's shell line that adds the image's static files to the assets volume."""
    release = image.removeprefix("sha256:")[:12]
    run = throwaway_run(stack, "frontend", image, volume, ASSETS_DIR)
    args = [static_dir, ASSETS_DIR, release, str(keep)]
    return shlex.join([*run, "-c", PUBLISH_SCRIPT, "publish-assets", *args])


def switch_traffic(
    owner: pulumi.Resource,
    stack: StackContext,
    service: str,
    container: docker.Container,
    port: int,
    *,
    image: pulumi.Input[str],
    after: Sequence[pulumi.Resource] = (),
) -> command.local.Command:
    """Point nginx's `service` upstream at `container` once it is healthy (a child of `owner`).

    A new container replaces the step, and the step runs before the old container is removed.
    """
    script = pulumi.Output.all(container.name, image, stack.volumes.upstreams).apply(
        lambda args: switch_script(
            stack.name, service, args[1], args[2], servers=f"server {args[0]}:{port};"
        )
    )
    return command.local.Command(
        f"{service}-switch",
        create=script,
        triggers=[container.id],
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[container, *after]),
    )


def publish_assets(
    owner: pulumi.Resource,
    stack: StackContext,
    *,
    image: pulumi.Input[str],
    static_dir: str,
    keep: int,
) -> command.local.Command:
    """Add a frontend image's static files to the assets volume nginx serves them from."""
    script = pulumi.Output.all(image, stack.volumes.assets).apply(
        lambda args: publish_script(stack.name, args[0], args[1], static_dir, keep)
    )
    return command.local.Command(
        "publish-assets",
        create=script,
        triggers=[image],
        opts=pulumi.ResourceOptions(parent=owner),
    )

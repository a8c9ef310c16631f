"""What the service components share: the one long-running container each one is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_docker as docker

from components.container import ServiceSpec, StackContext, service_container


class Service(pulumi.ComponentResource):
    """A component that is one long-running container; the container's name is its output."""

    container: docker.Container

    def run(
        self,
        stack: StackContext,
        spec: ServiceSpec,
        *,
        after: Sequence[pulumi.Resource],
        outputs: Mapping[str, pulumi.Input[str]] | None = None,
    ) -> None:
        """Start the container for `spec` once `after` is done; register the outputs."""
        self.container = service_container(self, stack, spec, after=after)
        self.register_outputs({"container": self.container.name, **(outputs or {})})


class ProxiedService(Service):
    """A service nginx proxies to."""

    upstream: str
    """host:port nginx proxies to."""

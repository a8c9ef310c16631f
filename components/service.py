"""What the stack's components share: the inputs each one is given besides its own, and, for a
service, the one long-running container it is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.container import ServiceSpec, StackContext, service_container
from components.switch import switch_traffic


@dataclass(frozen=True, kw_only=True)
class ComponentInputs:
    """The stack a component belongs to, and what must be done before it starts."""

    stack: StackContext
    after: Sequence[pulumi.Resource] = ()
    """Resources to wait for (a container healthy, a job run) beyond the outputs it is given."""


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
        self.container = service_container(self, stack, spec, after=after).container
        self.register_outputs({"container": self.container.name, **(outputs or {})})


class ProxiedService(Service):
    """A service nginx proxies to, and only once its container is healthy."""

    traffic: command.local.Command
    """The switch that pointed nginx at this container; nginx's first start waits for it."""

    def serve(
        self,
        stack: StackContext,
        spec: ServiceSpec,
        *,
        port: int,
        after: Sequence[pulumi.Resource],
        switch_after: Sequence[pulumi.Resource] = (),
    ) -> None:
        """Start the container for `spec` once `after` is done; once it is healthy (and
        `switch_after` is done, and its PIDs limit holds), move nginx's traffic for the service
        to it."""
        running = service_container(self, stack, spec, after=after)
        self.container = running.container
        self.traffic = switch_traffic(
            self,
            stack,
            spec.service,
            self.container,
            port,
            image=spec.image,
            after=[running.pids_limit, *switch_after],
        )
        self.register_outputs({"container": self.container.name})

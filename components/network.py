"""The two networks: an edge network for the web tier and an internal one for the data tier."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.container import NetworkNames, contract_labels, docker_name


class Networks(pulumi.ComponentResource):
    """`edge` carries nginx, frontend and backend; `data`, with no route out, the database."""

    edge: docker.Network
    data: docker.Network
    names: NetworkNames

    def __init__(self, name: str, *, stack: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("astats:network:Networks", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = [
            docker.NetworkLabelArgs(label=k, value=v)
            for k, v in sorted(contract_labels(stack).items())
        ]
        self.edge = docker.Network(
            "edge", name=docker_name(stack, "edge"), labels=labels, opts=child
        )
        self.data = docker.Network(
            "data", name=docker_name(stack, "data"), internal=True, labels=labels, opts=child
        )
        self.names = NetworkNames(edge=self.edge.name, data=self.data.name)
        self.register_outputs({"edge": self.edge.name, "data": self.data.name})

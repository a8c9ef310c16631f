"""The program's whole resource graph, recorded on Pulumi's mocks, brought up on a real engine
in the order `pulumi up` would follow, each resource the way its provider applies it.

- networks and volumes: `docker network create` / `docker volume create` with their labels;
- a container: `docker create` with the flags its registered inputs give
  (`tests/support/docker.py`), its published ports, its other networks, then started and waited
  for until healthy, for as long as `wait_timeout` says;
- a pulumi-command step (a container's files, its PIDs limit, the pre-migration backup, the
  migration, the traffic switch, the asset publisher): its `create` line through `/bin/sh -c`
  with its stdin and environment, a failure stopping the rollout with the step's output;
- images are the test's stand-ins for what the program would build or pull.

The mocks make up what only a provider knows: image ids, container ids and names. Image ids are
replaced by the stand-ins' tags wherever they appear, each container is created under the name
the mocks gave it (the switch's `server` line names it), and a mocked container id in a step's
environment becomes that name. The stack's name makes every Docker name its own, so parallel
tests never meet; `down` removes what `up` created.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.pulumi_harness import COMMAND, Graph, Registered
from tests.support.docker import (
    connect_networks,
    create_args,
    create_flags,
    docker,
    run_step,
)

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
IMAGES = ("docker:index/image:Image", "docker:index/remoteImage:RemoteImage")


class RolloutError(AssertionError):
    """A resource could not be brought up; the message says which, and why."""


def _in_rollout_order(resources: Iterable[Registered]) -> list[Registered]:
    """Custom resources, each after everything it depends on (a component's dependencies
    count for what is inside it, as for the engine)."""
    todo = [r for r in resources if r.custom]
    by_urn = {r.urn: r for r in todo}
    done: set[str] = set()
    ordered: list[Registered] = []
    while todo:
        ready = [r for r in todo if all(d in done or d not in by_urn for d in r.dependencies)]
        if not ready:
            raise RolloutError(f"a dependency cycle among {[r.name for r in todo]}")
        for resource in ready:
            ordered.append(resource)
            done.add(resource.urn)
        todo = [r for r in todo if r.urn not in done]
    return ordered


def _substituted(value: Any, replacements: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: _substituted(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v, replacements) for v in value]
    return value


@dataclass
class DockerStack:
    graph: Graph
    images: Mapping[str, str]
    """The stand-in image of each service (`astats.service`), which its jobs run too."""
    containers: dict[str, str] = field(default_factory=dict)
    """The real name of each service's container."""
    steps: dict[str, str] = field(default_factory=dict)
    """What each step printed, by its logical name."""
    _networks: list[str] = field(default_factory=list)
    _volumes: list[str] = field(default_factory=list)
    _stacks: set[str] = field(default_factory=set)

    def replacements(self) -> dict[str, str]:
        """Mocked image ids -> the stand-ins' tags; mocked container ids -> container names."""
        found = {}
        for service, container in self.graph.containers().items():
            found[container.inputs["image"]] = self.images[service]
            found[f"{container.name}-id"] = container.outputs["name"]
        return found

    def up(self, *, until: str | None = None) -> None:
        """Bring every resource up in order; with `until`, stop after the resource so named."""
        for resource in _in_rollout_order(self.graph.resources):
            if resource.type in IMAGES:
                continue
            inputs = _substituted(resource.inputs, self.replacements())
            if resource.type == NETWORK:
                self._network(inputs)
            elif resource.type == VOLUME:
                self._volume(inputs)
            elif resource.type == CONTAINER:
                self._container(resource, inputs)
            elif resource.type == COMMAND:
                self._step(resource.name, inputs)
            else:
                raise RolloutError(f"{resource.type} {resource.name}: not known here")
            if resource.name == until:
                return

    def _network(self, inputs: Mapping[str, Any]) -> None:
        labels = [f"--label={i['label']}={i['value']}" for i in inputs.get("labels", [])]
        internal = ["--internal"] if inputs.get("internal") else []
        docker("network", "create", *internal, *labels, inputs["name"])
        self._networks.append(inputs["name"])

    def _volume(self, inputs: Mapping[str, Any]) -> None:
        labels = [f"--label={i['label']}={i['value']}" for i in inputs.get("labels", [])]
        docker("volume", "create", *labels, inputs["name"])
        self._volumes.append(inputs["name"])

    def _container(self, resource: Registered, inputs: Mapping[str, Any]) -> None:
        name = resource.outputs["name"]
        labels = {i["label"]: i["value"] for i in inputs["labels"]}
        service = labels["astats.service"]
        self._stacks.add(labels["astats.stack"])
        ports = [
            f"--publish={p['ip']}:{int(p['external'])}:{int(p['internal'])}"
            for p in inputs.get("ports", [])
        ]
        docker(
            "create",
            f"--name={name}",
            *create_flags(inputs),
            *ports,
            inputs["image"],
            *create_args(inputs),
        )
        self.containers[service] = name
        connect_networks(name, inputs)
        docker("start", name)
        self.wait_healthy(name, float(inputs["waitTimeout"]))

    def _step(self, name: str, inputs: Mapping[str, Any]) -> None:
        result = run_step(inputs, timeout_s=300)
        if result.returncode != 0:
            raise RolloutError(f"step {name} failed ({result.returncode}): {result.stderr}")
        self.steps[name] = result.stdout

    def wait_healthy(self, name: str, timeout_s: float) -> None:
        """As `pulumi up` waits (wait=True): until healthy; a container that stops or turns
        unhealthy fails at once, with its log."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = json.loads(docker("inspect", "--format={{json .State}}", name).stdout)
            status = state.get("Health", {}).get("Status")
            if status == "healthy":
                return
            if status == "unhealthy" or not state["Running"] or time.monotonic() > deadline:
                logs = docker("logs", "--tail=40", name, check=False)
                raise RolloutError(
                    f"{name} never became healthy ({status}, running: {state['Running']}):\n"
                    f"{logs.stdout}{logs.stderr}"
                )
            time.sleep(0.3)

    def down(self) -> None:
        for name in reversed(list(self.containers.values())):
            docker("rm", "--force", "--volumes", name, check=False)
        for volume in reversed(self._volumes):
            docker("volume", "rm", "--force", volume, check=False)
        for network in reversed(self._networks):
            docker("network", "rm", network, check=False)
        # The release step's images (components/files/record-release.sh) carry the stack's label.
        for stack in self._stacks:
            listed = docker(
                "images",
                "--quiet",
                f"--filter=label=astats.stack={stack}",
                "--filter=label=astats.release",
            )
            for image in set(listed.stdout.split()):
                docker("rmi", "--force", image, check=False)

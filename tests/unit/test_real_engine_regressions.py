"""What the first real `pulumi up` showed, kept from coming back (README, Design notes)."""

from __future__ import annotations

import pytest

from components.docker_values import docker_cpus, docker_duration
from policy.astats_rules import duration_s
from tests.pulumi_harness import Graph, dev_config, evaluate

CONTAINER = "docker:index/container:Container"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return evaluate()


def test_the_frontend_names_its_server_because_the_launcher_entrypoint_drops_the_image_cmd(
    graph: Graph,
) -> None:
    frontend = graph.named("frontend", CONTAINER).inputs
    assert frontend["entrypoints"][:2] == ["/bin/sh", "-c"]
    assert frontend["entrypoints"][3:] == ["launch"]
    assert frontend["command"] == ["node", "server.js"]


def test_every_container_with_the_launcher_names_its_command(graph: Graph) -> None:
    for container in graph.of_type(CONTAINER):
        if container.inputs.get("entrypoints"):
            assert container.inputs.get("command"), container.name


@pytest.mark.parametrize("interval_s", [10, 90])
def test_cpus_and_healthcheck_durations_are_spelled_as_the_provider_reads_them_back(
    interval_s: int,
) -> None:
    settings = dev_config()
    settings["backend"]["healthcheck"] = {"intervalS": interval_s}
    settings["frontend"]["cpus"] = 0.5
    for container in evaluate(settings).of_type(CONTAINER):
        inputs = container.inputs
        assert inputs["cpus"] == docker_cpus(float(inputs["cpus"])), container.name
        for key in ("interval", "timeout", "startPeriod"):
            value = inputs["healthcheck"][key]
            assert value == docker_duration(int(duration_s(value))), (container.name, value)
    backend = evaluate(settings).named("backend", CONTAINER).inputs
    assert backend["healthcheck"]["interval"] == docker_duration(interval_s)

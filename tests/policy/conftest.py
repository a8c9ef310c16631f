"""What the real program registers for the dev and prod stacks, judged by the operators' rules."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy import astats_rules
from tests.pulumi_harness import ROOT, Graph, Registered, evaluate

POLICY_DIR = ROOT / "policy"
PROD_SECRETS = {
    "dbPassword": "prod-db-password",
    "secretKey": "prod-secret-key",
    "backupS3AccessKeyId": "prod-access-key-id",
    "backupS3SecretAccessKey": "prod-secret-access-key",
}

Hit = tuple[str, str]
"""(rule name, logical name of the resource that broke it)"""


def stack_config(stack: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.removeprefix("astats:"): v for k, v in data.items() if k.startswith("astats:")}


def options_of(resource: Registered) -> astats_rules.Options:
    return astats_rules.Options(
        protect=resource.protect, delete_before_replace=resource.delete_before_replace
    )


def as_stack_resource(resource: Registered) -> astats_rules.Resource:
    return astats_rules.Resource(
        type=resource.type,
        urn=resource.urn,
        name=resource.name,
        props=resource.inputs,
        dependencies=tuple(resource.dependencies),
    )


def hits(resources: Iterable[Registered]) -> set[Hit]:
    """What each rule finds, the stack rules' included, by rule and resource name."""
    found = set()
    registered = list(resources)
    for resource in registered:
        broken = astats_rules.violations(resource.type, resource.inputs, options_of(resource))
        found |= {(rule, resource.name) for rule in broken}
    by_urn = {r.urn: r.name for r in registered}
    stack = astats_rules.stack_violations([as_stack_resource(r) for r in registered])
    for rule, problems in stack.items():
        found |= {(rule, by_urn[urn]) for urn, _ in problems}
    return found


@pytest.fixture(scope="session")
def dev_graph() -> Graph:
    return evaluate()


@pytest.fixture(scope="session")
def prod_graph() -> Graph:
    return evaluate(stack_config("prod"), PROD_SECRETS, stack="prod")


@pytest.fixture
def dev(dev_graph: Graph) -> Graph:
    """A copy of the dev graph that a test may break."""
    return copy.deepcopy(dev_graph)


@pytest.fixture
def prod(prod_graph: Graph) -> Graph:
    return copy.deepcopy(prod_graph)


@pytest.fixture
def pack_on_path() -> Iterable[Path]:
    """The policy host runs `policy/__main__.py` with its own directory first on sys.path."""
    sys.path.insert(0, str(POLICY_DIR))
    try:
        yield POLICY_DIR
    finally:
        sys.path.remove(str(POLICY_DIR))

"""The policy pack as the engine runs it: `policy/__main__.py` builds a `PolicyPack`, and the
engine's Analyze calls go through pulumi-policy's own analyzer with the inputs in their wire
form (secrets still wrapped, preview values unknown).

`PolicyPack(...)` starts a gRPC server and blocks forever, so the tests stop it at the moment it
would open its port, keeping the analyzer it built.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Mapping
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy import astats_rules
from tests.policy.conftest import POLICY_DIR
from tests.pulumi_harness import SECRET_SIG, Graph, Registered

SECRET_VALUE_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
MANDATORY = analyzer_pb2.MANDATORY
ADVISORY = analyzer_pb2.ADVISORY


class _ServerStartedError(Exception):
    pass


class _FakeServer:
    def add_insecure_port(self, address: str) -> int:
        raise _ServerStartedError(address)


@pytest.fixture
def analyzer(monkeypatch: pytest.MonkeyPatch, pack_on_path: Any) -> Any:
    """The analyzer servicer that `policy/__main__.py` hands to gRPC."""
    built: list[Any] = []
    monkeypatch.setattr(grpc, "server", lambda *a, **k: _FakeServer())
    monkeypatch.setattr(
        analyzer_pb2_grpc,
        "add_AnalyzerServicer_to_server",
        lambda servicer, server: built.append(servicer),
    )
    with pytest.raises(_ServerStartedError):
        runpy.run_path(str(POLICY_DIR / "__main__.py"), run_name="__main__")
    assert len(built) == 1
    return built[0]


def configure(analyzer: Any, config: Mapping[str, str]) -> None:
    """What `--policy-pack-config` does: per-policy enforcement levels."""
    levels = {"advisory": ADVISORY, "mandatory": MANDATORY}
    analyzer.Configure(
        analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={
                name: analyzer_pb2.PolicyConfig(enforcementLevel=levels[level])
                for name, level in config.items()
            }
        ),
        None,
    )


def analyze(analyzer: Any, resource: Registered, wire: dict[str, Any] | None = None) -> list[Any]:
    request = analyzer_pb2.AnalyzeRequest(
        type=resource.type,
        urn=resource.urn,
        name=resource.name,
        properties=json_format.ParseDict(
            resource.wire if wire is None else wire, struct_pb2.Struct()
        ),
        options=analyzer_pb2.AnalyzerResourceOptions(
            protect=resource.protect,
            deleteBeforeReplace=resource.delete_before_replace,
            deleteBeforeReplaceDefined=True,
        ),
    )
    return list(analyzer.Analyze(request, None).diagnostics)


def analyze_stack(analyzer: Any, graph: Graph) -> list[Any]:
    """What the engine asks once every resource is known: the stack policies' turn."""
    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=r.type,
                urn=r.urn,
                name=r.name,
                properties=json_format.ParseDict(r.wire, struct_pb2.Struct()),
                dependencies=r.dependencies,
            )
            for r in graph.resources
            if r.custom
        ]
    )
    return list(analyzer.AnalyzeStack(request, None).diagnostics)


def analyze_graph(analyzer: Any, graph: Graph) -> list[tuple[str, str, int]]:
    found = []
    for resource in graph.resources:
        if resource.custom:
            found += [
                (d.policyName, resource.name, d.enforcementLevel)
                for d in analyze(analyzer, resource)
            ]
    return found


def test_the_pack_registers_every_rule_as_mandatory(analyzer: Any) -> None:
    info = analyzer.GetAnalyzerInfo(None, None)
    assert info.name == "astats-operators"
    rules = [rule.name for rule in astats_rules.RULES]
    rules += [rule.name for rule in astats_rules.STACK_RULES]
    assert [(p.name, p.enforcementLevel) for p in info.policies] == [
        (name, MANDATORY) for name in rules
    ]


def test_the_dev_stack_passes_with_its_policy_config(analyzer: Any, dev_graph: Graph) -> None:
    configure(analyzer, json.loads((POLICY_DIR / "config" / "dev.json").read_text()))
    # The engine registers the volumes concurrently: their order is not the program's.
    assert sorted(analyze_graph(analyzer, dev_graph)) == [
        ("data-volume-protected", "pgbackrest", ADVISORY),
        ("data-volume-protected", "pgdata", ADVISORY),
    ]


def test_without_the_dev_config_the_unprotected_volume_stops_the_rollout(
    analyzer: Any, dev_graph: Graph
) -> None:
    # The engine registers the volumes concurrently: their order is not the program's.
    assert sorted(analyze_graph(analyzer, dev_graph)) == [
        ("data-volume-protected", "pgbackrest", MANDATORY),
        ("data-volume-protected", "pgdata", MANDATORY),
    ]


def test_the_prod_stack_passes(analyzer: Any, prod_graph: Graph) -> None:
    assert analyze_graph(analyzer, prod_graph) == []


def test_a_cleared_delete_before_replace_reaches_the_policy(analyzer: Any, dev: Graph) -> None:
    nginx = dev.containers()["nginx"]
    nginx.delete_before_replace = False
    assert [d.policyName for d in analyze(analyzer, nginx)] == ["host-port-delete-before-replace"]


def test_a_secret_valued_credential_env_is_still_reported(analyzer: Any, dev: Graph) -> None:
    # pulumi-policy for Python hands secrets to resource policies decrypted, so a policy cannot
    # tell a secret from a literal: any credential in `envs` is reported, as `docker inspect`
    # shows it either way.
    backend = dev.containers()["backend"]
    wire = {
        **backend.wire,
        "envs": [
            *backend.wire["envs"],
            {SECRET_SIG: SECRET_VALUE_SIG, "value": "DB_PASSWORD=from-pulumi-config"},
        ],
    }
    diagnostics = analyze(analyzer, backend, wire)
    assert [d.policyName for d in diagnostics] == ["no-plaintext-secret-env"]
    assert "DB_PASSWORD" in diagnostics[0].message


def test_a_value_unknown_in_preview_neither_fails_nor_silences_the_rules(
    analyzer: Any, dev: Graph
) -> None:
    backend = dev.containers()["backend"]
    wire = {**backend.wire, "envs": [UNKNOWN_STRING], "memory": 0}
    diagnostics = analyze(analyzer, backend, wire)
    assert [d.policyName for d in diagnostics] == ["container-memory-limit"]


def test_every_container_of_both_stacks_has_its_pids_limit(
    analyzer: Any, dev_graph: Graph, prod_graph: Graph
) -> None:
    assert analyze_stack(analyzer, dev_graph) == []
    assert analyze_stack(analyzer, prod_graph) == []


def test_a_container_left_without_a_pids_limit_stops_the_rollout(analyzer: Any, dev: Graph) -> None:
    nginx = dev.containers()["nginx"]
    dev.resources = [r for r in dev.resources if r.name != "nginx-pids-limit"]
    [diagnostic] = analyze_stack(analyzer, dev)
    assert (diagnostic.policyName, diagnostic.urn) == ("container-pids-limit", nginx.urn)
    assert diagnostic.enforcementLevel == MANDATORY
    assert "the nginx container" in diagnostic.message and "no PIDs limit" in diagnostic.message


def test_a_writable_root_reaches_the_policy_named(analyzer: Any, dev: Graph) -> None:
    db = dev.containers()["db"]
    wire = {**db.wire, "readOnly": False}
    [diagnostic] = analyze(analyzer, db, wire)
    assert diagnostic.policyName == "container-read-only-root"
    assert "the db container has a writable root file system" in diagnostic.message

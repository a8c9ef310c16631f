"""The operators' rules hold for what the program really registers, and each one catches the
breakage it exists for, naming itself."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policy import astats_rules
from tests.policy.conftest import (
    POLICY_DIR,
    PROD_SECRETS,
    as_stack_resource,
    hits,
    options_of,
    stack_config,
)
from tests.pulumi_harness import Graph, dev_config, evaluate

# The data volume and the WAL archive (pgBackRest's repository): protected alike.
ADVISORY_IN_DEV = {("data-volume-protected", "pgdata"), ("data-volume-protected", "pgbackrest")}


def container(graph: Graph, service: str) -> dict[str, Any]:
    return graph.containers()[service].inputs


def new_hits(broken: Graph, baseline: Graph) -> set[tuple[str, str]]:
    return hits(broken.resources) - hits(baseline.resources)


def test_prod_stack_passes_every_rule(prod_graph: Graph) -> None:
    assert hits(prod_graph.resources) == set()


def test_dev_stack_passes_every_rule_except_the_one_it_runs_as_advisory(
    dev_graph: Graph,
) -> None:
    assert hits(dev_graph.resources) == ADVISORY_IN_DEV
    dev_policy_config = json.loads((POLICY_DIR / "config" / "dev.json").read_text())
    assert dev_policy_config == {rule: "advisory" for rule, _ in ADVISORY_IN_DEV}


def test_rules_see_every_container_and_the_data_volume(dev_graph: Graph) -> None:
    assert set(dev_graph.containers()) == {"db", "backend", "frontend", "nginx", "backup"}
    volumes = dev_graph.of_type(astats_rules.VOLUME)
    data = [v for v in volumes if astats_rules.is_database(v.inputs)]
    assert sorted(v.name for v in data) == ["db-files", "pgbackrest", "pgdata"]
    files = next(v for v in data if v.name == "db-files")
    assert astats_rules.FILES_LABEL in astats_rules.labels_of(files.inputs), "no data in it"


def test_a_container_without_log_rotation_breaks_log_rotation(dev: Graph, dev_graph: Graph) -> None:
    del container(dev, "backend")["logOpts"]
    assert new_hits(dev, dev_graph) == {("container-log-rotation", "backend")}


def test_a_container_without_memory_limit_breaks_memory_limit(dev: Graph, dev_graph: Graph) -> None:
    container(dev, "frontend")["memory"] = 0.0
    assert new_hits(dev, dev_graph) == {("container-memory-limit", "frontend")}


def test_a_container_without_healthcheck_breaks_healthcheck(dev: Graph, dev_graph: Graph) -> None:
    del container(dev, "nginx")["healthcheck"]
    assert new_hits(dev, dev_graph) == {("container-healthcheck", "nginx")}


def test_a_wait_timeout_shorter_than_the_healthcheck_breaks_waits_for_healthy(
    dev: Graph, dev_graph: Graph
) -> None:
    # The database's check: 30s start period + 10 retries x (5s + 5s) = 130s.
    container(dev, "db")["waitTimeout"] = 129.0
    assert new_hits(dev, dev_graph) == {("container-waits-for-healthy", "db")}


def test_not_waiting_for_healthy_breaks_waits_for_healthy(dev: Graph, dev_graph: Graph) -> None:
    container(dev, "backend")["wait"] = False
    assert new_hits(dev, dev_graph) == {("container-waits-for-healthy", "backend")}


def test_a_long_healthcheck_from_config_still_gets_a_long_enough_wait() -> None:
    settings = dev_config()
    settings["database"] = {
        **settings["database"],
        "healthcheck": {"intervalS": 30, "timeoutS": 20, "retries": 20, "startPeriodS": 600},
    }
    graph = evaluate(settings)
    assert container(graph, "db")["waitTimeout"] >= 600 + 20 * (30 + 20)
    assert hits(graph.resources) == ADVISORY_IN_DEV


def test_a_published_database_port_breaks_database_not_published(
    dev: Graph, dev_graph: Graph
) -> None:
    container(dev, "db")["ports"] = [{"ip": "0.0.0.0", "internal": 5432.0, "external": 5432.0}]
    assert new_hits(dev, dev_graph) == {("database-not-published", "db")}


def test_the_database_on_the_host_network_breaks_database_not_published(
    dev: Graph, dev_graph: Graph
) -> None:
    container(dev, "db")["networkMode"] = "host"
    assert new_hits(dev, dev_graph) == {("database-not-published", "db")}


def test_an_unprotected_data_volume_in_prod_breaks_data_volume_protected() -> None:
    settings = stack_config("prod")
    settings["database"] = {**settings["database"], "protectVolume": False}
    graph = evaluate(settings, PROD_SECRETS, stack="prod")
    assert hits(graph.resources) == ADVISORY_IN_DEV


def test_protecting_the_dev_volume_from_config_satisfies_data_volume_protected() -> None:
    settings = dev_config()
    settings["database"] = {**settings["database"], "protectVolume": True}
    assert hits(evaluate(settings).resources) == set()


def test_a_host_port_without_delete_before_replace_breaks_host_port_rule(
    dev: Graph, dev_graph: Graph
) -> None:
    dev.containers()["nginx"].delete_before_replace = False
    assert new_hits(dev, dev_graph) == {("host-port-delete-before-replace", "nginx")}


def test_a_host_port_with_unset_delete_before_replace_breaks_host_port_rule(
    dev: Graph, dev_graph: Graph
) -> None:
    frontend = dev.containers()["frontend"]
    frontend.inputs["ports"] = [{"ip": "127.0.0.1", "internal": 3000.0, "external": 3000.0}]
    assert not frontend.delete_before_replace
    assert new_hits(dev, dev_graph) == {("host-port-delete-before-replace", "frontend")}


def test_a_plaintext_password_env_breaks_no_plaintext_secret_env(
    dev: Graph, dev_graph: Graph
) -> None:
    container(dev, "backend")["envs"].append("DB_PASSWORD=hunter2")
    assert new_hits(dev, dev_graph) == {("no-plaintext-secret-env", "backend")}


@pytest.mark.parametrize(
    "env", ["SECRET_KEY=abc", "API_TOKEN=t0k3n", "AWS_SECRET_ACCESS_KEY=x", "pgpassword=p"]
)
def test_secret_looking_names_are_caught_whatever_their_case(env: str) -> None:
    props = {"envs": [env]}
    assert astats_rules.check_plaintext_secret_env(props, astats_rules.Options())


@pytest.mark.parametrize(
    "env", ["POSTGRES_PASSWORD_FILE=/run/secrets/db_password", "DB_PASSWORD=", "PGHOST=db"]
)
def test_file_references_empty_values_and_plain_settings_pass(env: str) -> None:
    props = {"envs": [env]}
    assert astats_rules.check_plaintext_secret_env(props, astats_rules.Options()) == []


def messages(broken: Graph, rule: str, service: str) -> list[str]:
    """What `rule` says about the `service` container of `broken`."""
    resource = broken.containers()[service]
    if rule in {r.name for r in astats_rules.RULES}:
        found = astats_rules.violations(resource.type, resource.inputs, options_of(resource))
        return found.get(rule, [])
    stack = astats_rules.stack_violations([as_stack_resource(r) for r in broken.resources])
    return [message for urn, message in stack.get(rule, []) if urn == resource.urn]


def test_a_writable_root_file_system_breaks_read_only_root(dev: Graph, dev_graph: Graph) -> None:
    del container(dev, "nginx")["readOnly"]
    container(dev, "db")["readOnly"] = False
    assert new_hits(dev, dev_graph) == {
        ("container-read-only-root", "nginx"),
        ("container-read-only-root", "db"),
    }
    [message] = messages(dev, "container-read-only-root", "nginx")
    assert message.startswith("the nginx container has a writable root file system")
    assert "read_only" in message


def test_default_capabilities_break_capabilities_dropped(dev: Graph, dev_graph: Graph) -> None:
    del container(dev, "backend")["capabilities"]
    container(dev, "backup")["capabilities"] = {"drops": ["NET_RAW"], "adds": ["CHOWN"]}
    assert new_hits(dev, dev_graph) == {
        ("container-capabilities-dropped", "backend"),
        ("container-capabilities-dropped", "scheduler"),
    }
    [message] = messages(dev, "container-capabilities-dropped", "backup")
    assert message.startswith("the backup container keeps Docker's default capabilities")
    assert "capabilities.drops lacks ALL" in message


@pytest.mark.parametrize("user", [None, "root", "0", "0:0", "root:astats"])
def test_root_or_no_user_breaks_non_root_user(dev: Graph, dev_graph: Graph, user: str) -> None:
    frontend = container(dev, "frontend")
    if user is None:
        del frontend["user"]
    else:
        frontend["user"] = user
    assert new_hits(dev, dev_graph) == {("container-non-root-user", "frontend")}
    [message] = messages(dev, "container-non-root-user", "frontend")
    assert message.startswith("the frontend container runs as root")


def test_a_container_without_its_pids_limit_step_breaks_pids_limit(
    dev: Graph, dev_graph: Graph
) -> None:
    backend = dev.containers()["backend"]
    dev.resources = [r for r in dev.resources if r.name != "backend-pids-limit"]
    assert new_hits(dev, dev_graph) == {("container-pids-limit", "backend")}
    [message] = messages(dev, "container-pids-limit", "backend")
    assert message.startswith(f"the backend container ({backend.name}) has no PIDs limit")
    assert "astats:<service>.pidsLimit" in message


@pytest.mark.parametrize("limit", ["0", "", "none"])
def test_a_pids_limit_step_without_a_positive_limit_breaks_pids_limit(
    dev: Graph, dev_graph: Graph, limit: str
) -> None:
    step = dev.named("db-pids-limit")
    step.inputs["environment"]["PIDS_LIMIT"] = limit
    assert new_hits(dev, dev_graph) == {("container-pids-limit", "db")}


def test_a_pids_limit_step_must_follow_its_container(dev: Graph, dev_graph: Graph) -> None:
    step = dev.named("frontend-pids-limit")
    step.dependencies = []
    assert new_hits(dev, dev_graph) == {("container-pids-limit", "frontend")}


def test_each_pids_limit_comes_from_its_services_setting() -> None:
    settings = dev_config()
    for service in ("database", "backend", "frontend", "nginx", "backup"):
        settings[service] = {**settings[service], "pidsLimit": 777}
    graph = evaluate(settings)
    assert {graph.pids_limit(c) for c in graph.containers().values()} == {777}
    assert hits(graph.resources) == ADVISORY_IN_DEV


def test_values_unknown_in_a_preview_are_never_reported() -> None:
    unknown = astats_rules.UNKNOWN
    props = {
        "envs": [unknown],
        "memory": unknown,
        "logDriver": unknown,
        "logOpts": unknown,
        "healthcheck": unknown,
        "wait": unknown,
        "waitTimeout": unknown,
        "readOnly": unknown,
        "capabilities": unknown,
        "user": unknown,
    }
    assert astats_rules.violations(astats_rules.CONTAINER, props, astats_rules.Options()) == {}
    container = astats_rules.Resource(astats_rules.CONTAINER, "urn:c", "c", {})
    step = astats_rules.Resource(
        astats_rules.COMMAND,
        "urn:s",
        "s",
        {"create": "docker update --pids-limit=...", "environment": {"PIDS_LIMIT": unknown}},
        ("urn:c",),
    )
    assert astats_rules.stack_violations([container, step]) == {}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600), ("0s", 0), ("0", 0), ("1.5s", 1.5)],
)
def test_docker_durations_parse(text: str, seconds: float) -> None:
    assert astats_rules.duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "5 s", "s", "5d", "1m30"])
def test_malformed_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        astats_rules.duration_s(text)


def test_unset_healthcheck_fields_count_with_dockers_defaults() -> None:
    # Docker: interval 30s, timeout 30s, 3 retries, no start period.
    assert astats_rules.healthcheck_budget_s({"tests": ["CMD", "true"]}) == 180

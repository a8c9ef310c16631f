"""The operators' promises about the rollout, checked on the graph the real program registers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.container import WAIT_MARGIN_S
from components.launcher import LAUNCHER_SOURCE
from tests.pulumi_harness import DEV_SECRETS, Graph, Registered, dev_config, evaluate

SERVICES = {"db", "backend", "frontend", "nginx", "backup"}
COMMAND = "command:local:Command"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return evaluate()


def labels(resource: Registered) -> dict[str, str]:
    return {item["label"]: item["value"] for item in resource.inputs.get("labels", [])}


def seconds(duration: str) -> int:
    assert duration.endswith("s"), duration
    return int(duration[:-1])


def test_one_container_per_service_labelled_by_stack_and_service(graph: Graph) -> None:
    containers = graph.of_type("docker:index/container:Container")
    assert sorted(labels(c)["astats.service"] for c in containers) == sorted(SERVICES)
    assert all(labels(c)["astats.stack"] == "dev" for c in containers)


def test_jobs_are_labelled_too(graph: Graph) -> None:
    for job, service in (("pre-migration-backup", "backup"), ("migration", "migration")):
        create = graph.named(job, COMMAND).inputs["create"]
        assert f"--label=astats.service={service}" in create
        assert "--label=astats.stack=dev" in create


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_long_running_container_meets_the_contract(graph: Graph, service: str) -> None:
    c = graph.containers()[service].inputs
    assert c["restart"] == "unless-stopped"
    assert c["memory"] > 0 and c["memorySwap"] == c["memory"]
    assert c["logDriver"] == "json-file"
    assert set(c["logOpts"]) == {"max-size", "max-file"}
    check = c["healthcheck"]
    assert check["tests"][0] in {"CMD", "CMD-SHELL"}
    budget = seconds(check["startPeriod"]) + check["retries"] * (
        seconds(check["interval"]) + seconds(check["timeout"])
    )
    assert c["wait"] is True
    assert c["waitTimeout"] >= budget + WAIT_MARGIN_S
    assert "no-new-privileges:true" in c["securityOpts"]


def test_healthcheck_edits_force_a_replacement(graph: Graph) -> None:
    for c in graph.containers().values():
        assert "healthcheck" in c.replace_on_changes


def test_database_is_unreachable_from_the_host(graph: Graph) -> None:
    db = graph.containers()["db"].inputs
    assert not db.get("ports")
    networks = [n["name"] for n in db["networksAdvanced"]]
    assert networks == ["astats-dev-data"]
    data = graph.named("data", "docker:index/network:Network").inputs
    assert data["internal"] is True


def test_database_password_arrives_as_a_file_not_in_the_environment(graph: Graph) -> None:
    db = graph.containers()["db"]
    envs = dict(e.split("=", 1) for e in db.inputs["envs"])
    assert envs["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert "POSTGRES_PASSWORD" not in envs
    assert graph.files(db) == {"db_password": DEV_SECRETS["dbPassword"]}
    mounts = {v["containerPath"]: v for v in db.inputs["volumes"]}
    assert mounts["/run/secrets"] == {
        "volumeName": "astats-dev-db-files",
        "containerPath": "/run/secrets",
        "readOnly": True,
    }


def test_data_volumes_survive_destroy(graph: Graph) -> None:
    for name in ("pgdata", "backups", "backend-logs"):
        assert graph.named(name, "docker:index/volume:Volume").retain_on_delete


def test_prod_protects_the_data_volume() -> None:
    import yaml

    from tests.pulumi_harness import ROOT

    prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    settings = {k.removeprefix("astats:"): v for k, v in prod.items()}
    secrets = DEV_SECRETS | {"backupS3AccessKeyId": "AKIA", "backupS3SecretAccessKey": "s3cr3t"}
    prod_graph = evaluate(settings, secrets, stack="prod")
    assert prod_graph.named("pgdata", "docker:index/volume:Volume").protect
    assert prod_graph.named("backups", "docker:index/volume:Volume").protect


def test_published_ports_mean_delete_before_replace(graph: Graph) -> None:
    for service, c in graph.containers().items():
        if c.inputs.get("ports"):
            assert c.delete_before_replace, service
    assert graph.containers()["nginx"].inputs["ports"][0]["external"] == 8080


def test_stateful_containers_never_run_twice_but_stateless_ones_roll(graph: Graph) -> None:
    containers = graph.containers()
    assert containers["db"].delete_before_replace
    assert containers["backup"].delete_before_replace
    assert not containers["backend"].delete_before_replace
    assert not containers["frontend"].delete_before_replace


def test_web_containers_get_no_traffic_by_dns_alone(graph: Graph) -> None:
    """A new backend or frontend joins no shared alias: nginx reaches it by its own name, and
    only once the switch has pointed nginx at it."""

    def aliases(service: str) -> set[str]:
        c = graph.containers()[service].inputs
        return {a for n in c["networksAdvanced"] for a in n.get("aliases", [])}

    assert aliases("db") == {"db"}
    assert aliases("backend") == set()
    assert aliases("frontend") == set()


def test_rollout_order(graph: Graph) -> None:
    c = graph.containers()
    backup_job = graph.named("pre-migration-backup", COMMAND)
    migration = graph.named("migration", COMMAND)
    assert graph.waits_for(backup_job, c["db"])
    assert graph.waits_for(migration, backup_job)
    assert graph.waits_for(c["backend"], migration)
    assert graph.waits_for(c["nginx"], c["backend"])
    assert graph.waits_for(c["nginx"], c["frontend"])
    for service in ("backend", "frontend"):
        switch = graph.child_of(service, f"{service}-switch", COMMAND)
        assert graph.waits_for(switch, c[service])
        assert graph.waits_for(c["nginx"], switch)
    assets = graph.child_of("frontend", "publish-assets", COMMAND)
    assert graph.waits_for(graph.child_of("frontend", "frontend-switch", COMMAND), assets)
    assert graph.waits_for(c["backup"], c["db"])
    for resource in (c["db"], backup_job, migration, c["backend"]):
        assert graph.waits_for(resource, graph.named("data", "docker:index/network:Network"))


def test_frontend_does_not_wait_for_the_database_chain(graph: Graph) -> None:
    frontend = graph.containers()["frontend"]
    chain = [graph.containers()["db"], graph.named("migration", COMMAND)]
    assert not any(graph.waits_for(frontend, r) for r in chain)


def test_a_migration_never_runs_before_a_verified_backup(graph: Graph) -> None:
    backup_job = graph.named("pre-migration-backup", COMMAND)
    migration = graph.named("migration", COMMAND)
    assert "astats_ops backup --dest /backups" in backup_job.inputs["create"]
    # The migration is re-run only by a new backup's path, which only a backup run produces.
    assert migration.inputs["triggers"] == [backup_job.outputs["stdout"]]
    assert backup_job.urn in migration.dependencies


def _job_inputs(g: Graph) -> dict[str, Any]:
    return {name: g.named(name, COMMAND).wire for name in ("pre-migration-backup", "migration")}


def test_an_unchanged_backend_image_reruns_nothing(graph: Graph) -> None:
    assert _job_inputs(evaluate()) == _job_inputs(graph)


def test_a_new_backend_image_reruns_backup_then_migration(graph: Graph) -> None:
    config = dev_config()
    config["backend"] = {
        **config["backend"],
        "build": {**config["backend"]["build"], "args": {"V": "2"}},
    }
    changed = evaluate(config)
    before, after = _job_inputs(graph), _job_inputs(changed)
    assert before["pre-migration-backup"]["triggers"] != after["pre-migration-backup"]["triggers"]
    assert before["migration"]["triggers"] != after["migration"]["triggers"]


def test_a_changed_migration_command_also_takes_a_backup_first(graph: Graph) -> None:
    config = dev_config()
    config["backend"] = {**config["backend"], "migrationCommand": ["alembic", "upgrade", "heads"]}
    changed = _job_inputs(evaluate(config))
    assert (
        changed["pre-migration-backup"]["triggers"]
        != _job_inputs(graph)["pre-migration-backup"]["triggers"]
    )


def test_a_no_op_evaluation_registers_identical_inputs(graph: Graph) -> None:
    def plan(g: Graph) -> dict[str, tuple[Any, ...]]:
        # Registration order is asynchronous; what Pulumi diffs is each URN's inputs and options.
        return {
            r.urn: (r.wire, sorted(r.dependencies), r.delete_before_replace, r.protect)
            for r in g.resources
        }

    assert plan(evaluate()) == plan(graph)


SENTINELS = {"dbPassword": "Sentinel-DB-7f3a9c", "secretKey": "Sentinel-KEY-41be2d"}


def _plaintext_hits(value: Any, sentinels: set[str], path: str = "") -> list[str]:
    if isinstance(value, dict):
        if "4dabf18193072939515e22adb298388d" in value:
            return []
        return [h for k, v in value.items() for h in _plaintext_hits(v, sentinels, f"{path}.{k}")]
    if isinstance(value, list):
        return [
            h for i, v in enumerate(value) for h in _plaintext_hits(v, sentinels, f"{path}[{i}]")
        ]
    if isinstance(value, str) and any(s in value for s in sentinels):
        return [path]
    return []


def test_secrets_never_appear_unwrapped_in_any_resource_input() -> None:
    secrets = SENTINELS | {
        "backupS3AccessKeyId": "Sentinel-AKID-9d1",
        "backupS3SecretAccessKey": "Sentinel-S3-c0ffee",
    }
    config = dev_config()
    config["backup"] = {**config["backup"], "s3": {"bucket": "astats-backups"}}
    g = evaluate(config, secrets)
    hits = [
        f"{r.type} {r.name}{h}"
        for r in g.resources
        for h in _plaintext_hits(r.wire, set(secrets.values()))
    ]
    assert hits == []
    # ...and they did reach the containers that need them, as files, wrapped.
    delivered = json.dumps([g.files(c) for c in g.containers().values() if c.name != "frontend"])
    for value in secrets.values():
        assert value in delivered


def test_secrets_never_reach_a_container_environment() -> None:
    g = evaluate(dev_config(), SENTINELS)
    for c in g.of_type("docker:index/container:Container"):
        assert not any(s in e for e in c.inputs.get("envs", []) for s in SENTINELS.values())


def test_backend_workers_follow_the_cpu_limit(graph: Graph) -> None:
    command = graph.containers()["backend"].inputs["command"]
    assert "--workers=3" in command  # 1 cpu -> 2 x 1 + 1, within 768 MB / 256 MB
    assert "--proxy-headers" in command


def nginx_conf(g: Graph) -> str:
    return g.files(g.containers()["nginx"])["nginx.conf"]


def test_nginx_runs_the_rendered_config(graph: Graph) -> None:
    conf = nginx_conf(graph)
    assert 'location ^~ "/ws/dev-cockpit"' in conf
    # Each upstream's server is the file the switch writes; no resolver re-resolves names.
    assert "include /etc/nginx/astats-upstreams/backend.conf;" in conf
    assert "include /etc/nginx/astats-upstreams/frontend.conf;" in conf
    assert "keepalive 32;" in conf
    assert "resolver" not in conf
    mounts = {v["containerPath"]: v for v in graph.containers()["nginx"].inputs["volumes"]}
    assert mounts["/etc/nginx/astats-upstreams"]["volumeName"] == "astats-dev-upstreams"
    assert mounts["/srv/astats-assets"]["readOnly"] is True


def test_stack_outputs_tell_operators_where_everything_is(graph: Graph) -> None:
    outputs = graph.stack_outputs
    assert outputs["url"] == "http://localhost:8080"
    names = {c.outputs["name"] for c in graph.of_type("docker:index/container:Container")}
    assert set(outputs["containers"]) == SERVICES
    assert set(outputs["containers"].values()) == names
    assert outputs["dataVolume"] == "astats-dev-pgdata"
    assert outputs["backupsVolume"] == "astats-dev-backups"


@pytest.mark.parametrize("service", ["backend", "frontend"])
def test_a_new_web_container_gets_traffic_only_after_it_is_healthy(
    graph: Graph, service: str
) -> None:
    container = graph.containers()[service]
    switch = graph.child_of(service, f"{service}-switch", COMMAND)
    # `pulumi up` waits for healthy before anything that depends on the container runs.
    assert container.inputs["wait"] is True
    assert graph.waits_for(switch, container)
    name = container.outputs["name"]
    port = 8000 if service == "backend" else 3000
    assert f"servers='server {name}:{port};'" in switch.inputs["create"]
    # A new container replaces the switch, so it runs again for every replacement.
    assert switch.inputs["triggers"] == [f"{service}-id"]  # the container's id, as mocked
    # Traffic has left a container before it is stopped: no drain is held back.
    envs = dict(e.split("=", 1) for e in container.inputs.get("envs", []))
    assert "ASTATS_DRAIN_SECONDS" not in envs
    assert container.inputs["entrypoints"] == [
        "/bin/sh",
        "-c",
        LAUNCHER_SOURCE.read_text(),
        "launch",
    ]

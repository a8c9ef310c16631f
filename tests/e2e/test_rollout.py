"""The README's rollout promises, shown by the real `pulumi up`, `preview` and `destroy` on the
local Docker engine. The tests run in file order against one stack (tests/e2e/conftest.py)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import Deployment
from tests.e2e.engine import Step, labelled, read_events, step_seconds, steps, summary
from tests.e2e.traffic import CockpitClient, SteadyLoad, echo

SERVICES = ("db", "backend", "frontend", "nginx", "backup")
CLEAN_WS_CLOSES = {1001, 1012}
MEASURED: dict[str, object] = {}
SUMMARIES: list[dict[str, int]] = []


def containers(stack: str) -> dict[str, dict[str, object]]:
    ids = labelled(stack, ("ps", "-q"))
    inspected = json.loads(
        subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout or "[]"
    )
    return {item["Config"]["Labels"]["astats.service"]: item for item in inspected}


def health(item: dict[str, object]) -> str:
    state = item["State"]
    assert isinstance(state, dict)
    return str(state.get("Health", {}).get("Status", "none"))


def before(first: Step, then: Step) -> None:
    assert first.finished is not None, f"{first.name} never finished"
    assert first.finished < then.started, (
        f"{then.name} started (event {then.started}) before {first.name} finished "
        f"(event {first.finished})"
    )


def depends_on(resources: Iterable[dict[str, object]], name: str) -> set[str]:
    """Every resource `name` waits for, directly or through others (the engine's own state)."""
    by_urn = {str(item["urn"]): item for item in resources}
    wanted = {urn for urn in by_urn if urn.endswith(f"::{name}")}
    seen: set[str] = set()
    while wanted:
        urn = wanted.pop()
        for dependency in by_urn[urn].get("dependencies") or []:  # type: ignore[attr-defined]
            if dependency not in seen:
                seen.add(dependency)
                wanted.add(dependency)
    return {urn.rsplit("::", 1)[-1] for urn in seen}


def timed_up(deployment: Deployment, label: str = "") -> tuple[dict[str, Step], float]:
    log = deployment.event_log
    started = time.monotonic()
    deployment.project.up(event_log=log)
    elapsed = time.monotonic() - started
    events = read_events(log)
    SUMMARIES.append(summary(events))
    if label:
        MEASURED[f"{label}_steps_s"] = step_seconds(events)
    return steps(events), elapsed


def test_cold_up_rolls_out_in_order_and_every_service_is_healthy(deployment: Deployment) -> None:
    MEASURED["cold_up_s"] = round(deployment.first_up_seconds, 1)
    cold = read_events(deployment.scratch / "events-cold-up.jsonl")
    MEASURED["cold_up_steps_s"] = step_seconds(cold)
    running = containers(deployment.project.stack)
    assert set(running) == set(SERVICES)
    assert {service: health(item) for service, item in running.items()} == dict.fromkeys(
        SERVICES, "healthy"
    )

    step = deployment.first_up
    before(step["db"], step["pre-migration-backup"])
    before(step["pre-migration-backup"], step["migration"])
    before(step["migration"], step["backend"])
    before(step["backend"], step["nginx"])
    before(step["frontend"], step["nginx"])
    # Traffic goes to a container only once it is healthy and switched to.
    for service in ("backend", "frontend"):
        before(step[service], step[f"{service}-switch"])
        before(step[f"{service}-switch"], step["nginx"])
    before(step["publish-assets"], step["frontend-switch"])
    before(step["db"], step["scheduler"])
    assert "db" not in depends_on(deployment.project.resources(), "frontend")


def test_the_url_answers_through_nginx_and_the_cockpit_echoes(deployment: Deployment) -> None:
    outputs = deployment.project.outputs()
    assert outputs["url"] == f"http://localhost:{deployment.port}"
    with httpx.Client(base_url=deployment.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/api/db").json()["revision"] == "0001_cockpit_notes"
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
    assert echo(deployment.ws_url, "hello cockpit") == "hello cockpit"


def test_a_second_up_and_a_preview_change_nothing(deployment: Deployment) -> None:
    step, elapsed = timed_up(deployment)
    MEASURED["noop_up_s"] = round(elapsed, 1)
    changed = {name: s.op for name, s in step.items() if s.op != "same"}
    MEASURED["noop_changes"] = sum(n for op, n in SUMMARIES[-1].items() if op != "same")
    assert changed == {}
    preview = deployment.project.preview("--expect-no-changes", "--diff", check=False)
    assert preview.returncode == 0, preview.output
    # A clean preview is quiet, so a real warning stands out (builds name their platform).
    assert "warning" not in preview.output.lower(), preview.output


def api_db(deployment: Deployment) -> dict[str, object]:
    """The backend's /api/db through nginx; on an error, the proxy's last log lines too."""
    with httpx.Client(base_url=deployment.url, timeout=10) as http:
        response = http.get("/api/db")
    if response.status_code != 200:
        nginx = containers(deployment.project.stack)["nginx"]["Id"]
        logs = subprocess.run(
            ["docker", "logs", "--tail", "20", str(nginx)], capture_output=True, text=True
        )
        upstream = subprocess.run(
            ["docker", "exec", str(nginx), "cat", "/etc/nginx/astats-upstreams/backend.conf"],
            capture_output=True,
            text=True,
        )
        raise AssertionError(
            f"/api/db answered {response.status_code}; nginx:\n{logs.stdout}{logs.stderr}\n"
            f"nginx's backend upstream: {upstream.stdout}{upstream.stderr}\n"
            f"backend containers: {backend_containers(deployment.project.stack)}"
        )
    return dict(response.json())


def backend_containers(stack: str) -> list[dict[str, object]]:
    """Every backend container Docker holds for the stack: state, addresses and aliases."""
    ids = labelled(stack)
    inspected = json.loads(
        subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout or "[]"
    )
    return [
        {
            "name": item["Name"],
            "state": item["State"]["Status"],
            "health": item["State"].get("Health", {}).get("Status"),
            "networks": {
                name: (net.get("IPAddress"), net.get("Aliases"))
                for name, net in item["NetworkSettings"]["Networks"].items()
            },
        }
        for item in inspected
        if item["Config"]["Labels"].get("astats.service") == "backend"
    ]


def write_migration(context: Path, revision: str, down: str, body: str) -> None:
    (context / "migrations" / "versions" / f"{revision}.py").write_text(
        f'"""E2E migration {revision}."""\n\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = {revision!r}\ndown_revision = {down!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n    {body}\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )


def test_a_new_backend_image_backs_up_migrates_and_replaces_without_a_failed_request(
    deployment: Deployment,
) -> None:
    write_migration(
        deployment.backend_context,
        "0002_e2e_releases",
        "0001_cockpit_notes",
        'op.create_table("e2e_releases", sa.Column("id", sa.Integer, primary_key=True))',
    )
    log = deployment.event_log
    deployment.project.preview("--diff", event_log=log)
    planned = {name: s.op for name, s in steps(read_events(log)).items() if s.op != "same"}
    for name in ("pre-migration-backup", "migration", "backend"):
        assert planned.get(name) == "replace", planned
    assert "db" not in planned and "frontend" not in planned, planned

    clients = [CockpitClient(deployment.ws_url) for _ in range(3)]
    with SteadyLoad(deployment.url, ("/health", "/api/db", "/"), timeout_s=2) as load:
        step, elapsed = timed_up(deployment, "rollout")
        time.sleep(2)
    for client in clients:
        client.wait()
    MEASURED["rollout_s"] = round(elapsed, 1)
    MEASURED["rollout_requests"] = load.report.requests
    MEASURED["rollout_failed_requests"] = len(load.report.failures)
    MEASURED["rollout_resent_requests"] = len(load.report.resent)
    MEASURED["rollout_latency_max_s"] = round(load.report.max_s, 3)
    MEASURED["ws_close_codes"] = [client.close_code for client in clients]

    before(step["pre-migration-backup"], step["migration"])
    before(step["migration"], step["backend"])
    before(step["backend"], step["backend-switch"])
    assert load.report.requests > 0
    assert load.report.failures == []
    for client in clients:
        assert client.close_error is None and client.close_code in CLEAN_WS_CLOSES, (
            client.close_code,
            client.close_error,
        )
        assert client.reconnected_echo == "again"
    assert api_db(deployment)["revision"] == "0002_e2e_releases"


def test_a_failing_migration_fails_up_with_alembics_error_and_the_old_backend_serves(
    deployment: Deployment,
) -> None:
    old_backend = containers(deployment.project.stack)["backend"]["Id"]
    write_migration(
        deployment.backend_context,
        "0003_e2e_broken",
        "0002_e2e_releases",
        'op.execute("ALTER TABLE no_such_table ADD COLUMN x int")',
    )
    failed = deployment.project.up(check=False)
    assert failed.returncode != 0
    assert 'relation "no_such_table" does not exist' in failed.output
    assert "alembic" in failed.output.lower()
    assert containers(deployment.project.stack)["backend"]["Id"] == old_backend
    with httpx.Client(base_url=deployment.url, timeout=10) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/api/db").json()["revision"] == "0002_e2e_releases"

    write_migration(
        deployment.backend_context,
        "0003_e2e_broken",
        "0002_e2e_releases",
        'op.add_column("e2e_releases", sa.Column("x", sa.Integer))',
    )
    deployment.project.up()
    assert api_db(deployment)["revision"] == "0003_e2e_broken"


def test_a_missing_secret_fails_preview_naming_the_key_and_creates_nothing(
    deployment: Deployment,
) -> None:
    project = deployment.project
    other = f"{project.stack}-nokey"
    config = project.root / f"Pulumi.{project.stack}.yaml"
    # The same settings without the secrets (and without the salt they were encrypted with).
    settings = yaml.safe_load(config.read_text())["config"]
    for key in ("astats:secretKey", "astats:dbPassword"):
        del settings[key]
    (project.root / f"Pulumi.{other}.yaml").write_text(yaml.safe_dump({"config": settings}))
    nokey = dataclasses.replace(project, stack=other)
    nokey.init()
    try:
        nokey.set_config("astats:dbPassword", "e2e-only", secret=True)
        preview = nokey.preview(check=False)
        assert preview.returncode != 0
        assert "astats:secretKey" in preview.output
        assert "pulumi config set --secret astats:secretKey" in preview.output
        up = nokey.up(check=False)
        assert up.returncode != 0
        assert [r["type"] for r in nokey.resources() if "docker" in r["type"]] == []
        assert labelled(other) == []
    finally:
        nokey.remove_stack()


def test_destroy_keeps_the_data_volume_and_a_new_up_finds_the_data(deployment: Deployment) -> None:
    project = deployment.project
    db = containers(project.stack)["db"]["Id"]
    subprocess.run(
        [
            "docker",
            "exec",
            str(db),
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "astats",
            "-d",
            "astats",
            "-c",
            "INSERT INTO cockpit_notes (body) VALUES ('kept across destroy')",
        ],
        check=True,
        capture_output=True,
    )
    before = api_db(deployment)
    volume = project.outputs()["dataVolume"]
    project.destroy()
    assert containers(project.stack) == {}
    inspected = subprocess.run(["docker", "volume", "inspect", volume], capture_output=True)
    assert inspected.returncode == 0, f"{volume} was deleted by destroy"

    project.up()
    state = api_db(deployment)
    assert state["notes"] == before["notes"] == 1
    assert state["revision"] == before["revision"]


def test_the_policy_pack_passes_on_dev_and_trips_on_a_broken_setting(
    deployment: Deployment, policy_venv: Path
) -> None:
    project = deployment.project
    passed = project.preview(
        "--policy-pack", "policy", "--policy-pack-config", "policy/config/dev.json", check=False
    )
    assert passed.returncode == 0, passed.output
    # The e2e stack, like dev, leaves its data volume unprotected: the pack as prod runs it
    # (no advisory config) must refuse that.
    tripped = project.preview("--policy-pack", "policy", check=False)
    assert tripped.returncode != 0
    assert "data-volume-protected" in tripped.output, tripped.output
    assert "mandatory" in tripped.output.lower(), tripped.output


@pytest.fixture(scope="session")
def policy_venv(deployment: Deployment) -> Path:
    """The policy pack's own virtualenv (policy/venv), as the README makes it."""
    venv = deployment.project.root / "policy" / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "-r",
            str(deployment.project.root / "policy" / "requirements.txt"),
        ],
        check=True,
    )
    return venv


def test_report_the_measurements() -> None:
    print("\nE2E measurements:", json.dumps(MEASURED | {"summaries": SUMMARIES}, indent=2))

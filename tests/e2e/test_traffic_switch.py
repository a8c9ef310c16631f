"""Traffic only ever reaches healthy containers, on the real engine, under a bounded loopback
load (a request every 25 ms, a client timeout of 2 s): a broken release, a slow one, ten
replacements in a row, and a frontend rollout whose old pages keep their assets."""

from __future__ import annotations

import json
import re
import subprocess
import time

import httpx

from tests.e2e.conftest import Deployment
from tests.e2e.engine import labelled, read_events, step_seconds
from tests.e2e.traffic import LoadReport, SteadyLoad

TIMEOUT_S = 2.0
SLOW_S = 1.0
INTERVAL_S = 0.025
MEASURED: dict[str, object] = {}
BACKEND_STEP = re.compile(r"(backend|backend-switch|backend-image|pre-migration-backup|migration):")


def load(deployment: Deployment, *paths: str) -> SteadyLoad:
    return SteadyLoad(
        deployment.url, paths or ("/api/db",), interval_s=INTERVAL_S, timeout_s=TIMEOUT_S
    )


def service_containers(stack: str, service: str) -> list[dict[str, object]]:
    ids = labelled(stack)
    inspected = json.loads(
        subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout or "[]"
    )
    return [item for item in inspected if item["Config"]["Labels"]["astats.service"] == service]


def nginx_state(stack: str) -> list[dict[str, object]]:
    """What tells a replaced, restarted or killed nginx apart: its id, restarts and last exit."""
    states = []
    for item in service_containers(stack, "nginx"):
        state = item["State"]
        assert isinstance(state, dict)
        states.append(
            {
                "id": str(item["Id"])[:12],
                "restarts": item["RestartCount"],
                "started": state["StartedAt"],
                "oom_killed": state["OOMKilled"],
                "exit_code": state["ExitCode"],
            }
        )
    return states


def set_backend_env(deployment: Deployment, name: str, value: str | None) -> None:
    key = f"astats:backend.env.{name}"
    if value is None:
        deployment.project.remove_config(key, path=True)
    else:
        deployment.project.set_config(key, value, path=True)


def record(label: str, report: LoadReport) -> None:
    MEASURED[label] = {
        "requests": report.requests,
        "failed": len(report.failures),
        "resent": len(report.resent),
        "over_1s": report.slower_than(SLOW_S),
        "max_s": round(report.max_s, 3),
        "p99_s": round(report.p99_s, 3),
    }


def assert_clean(report: LoadReport) -> None:
    assert report.requests > 50, "too little traffic to prove anything"
    assert report.failures == [], report.failures[:10]
    assert report.slower_than(SLOW_S) == 0, sorted(report.latencies_s)[-5:]


def test_a_release_whose_health_check_fails_never_gets_a_request(deployment: Deployment) -> None:
    stack = deployment.project.stack
    serving = [c["Id"] for c in service_containers(stack, "backend")]
    with load(deployment) as during:
        set_backend_env(deployment, "DEMO_FAULT", "broken")
        failed = deployment.project.up(check=False)
    with load(deployment) as after:
        time.sleep(20)
    record("broken_release_during", during.report)
    record("broken_release_after", after.report)
    assert failed.returncode != 0
    assert "failed to be in healthy state" in failed.output, failed.output[-2000:]
    assert_clean(during.report)
    assert_clean(after.report)
    # The broken container is still there, out of rotation, beside the one that serves.
    assert len(service_containers(stack, "backend")) == 2

    set_backend_env(deployment, "DEMO_FAULT", None)
    with load(deployment) as recovery:
        deployment.project.up()
    record("broken_release_recovery", recovery.report)
    assert_clean(recovery.report)
    remaining = service_containers(stack, "backend")
    assert len(remaining) == 1, "the next successful up removes the failed container"
    assert remaining[0]["Id"] not in serving


def test_a_slow_starting_release_is_switched_to_only_when_it_serves(
    deployment: Deployment,
) -> None:
    with load(deployment) as during:
        set_backend_env(deployment, "DEMO_START_DELAY_S", "10")
        deployment.project.up()
    record("slow_release", during.report)
    assert_clean(during.report)
    with httpx.Client(base_url=deployment.url, timeout=5) as client:
        assert client.get("/api/db").status_code == 200


def test_ten_backend_replacements_in_a_row_fail_no_request(deployment: Deployment) -> None:
    set_backend_env(deployment, "DEMO_START_DELAY_S", None)
    rounds: list[dict[str, object]] = []
    for number in range(10):
        # Even rounds change only the env; odd ones build a new image. Every third runs with
        # no traffic just before the rollout starts.
        if number % 2:
            marker = deployment.backend_context / "app" / "release.txt"
            marker.write_text(f"e2e release {number}\n")
        else:
            set_backend_env(deployment, "E2E_ROUND", str(number))
        if number % 3 == 0:
            time.sleep(5)
        log = deployment.event_log
        nginx_before = nginx_state(deployment.project.stack)
        with load(deployment, "/api/db", "/health") as during:
            started = time.monotonic()
            deployment.project.up(event_log=log)
            elapsed = time.monotonic() - started
        nginx_after = nginx_state(deployment.project.stack)
        assert during.report.failures == [], (
            f"round {number}: {during.report.failures[:10]}; "
            f"nginx before {nginx_before}, after {nginx_after}"
        )
        assert nginx_after == nginx_before, f"round {number}: nginx changed"
        assert_clean(during.report)
        rounds.append(
            {
                "kind": "image" if number % 2 else "env",
                "idle_before": number % 3 == 0,
                "up_s": round(elapsed, 1),
                "max_s": round(during.report.max_s, 3),
                "p99_s": round(during.report.p99_s, 3),
                "requests": during.report.requests,
                "resent": len(during.report.resent),
                "steps_s": {
                    k: v for k, v in step_seconds(read_events(log)).items() if BACKEND_STEP.match(k)
                },
            }
        )
    MEASURED["ten_replacements"] = rounds
    assert len(service_containers(deployment.project.stack, "backend")) == 1


def test_a_frontend_rollout_keeps_the_old_pages_assets(deployment: Deployment) -> None:
    page = deployment.project.root / "examples" / "demo-app" / "frontend" / "app" / "page.js"
    chunks_by_release: list[list[str]] = []

    def current_chunks() -> list[str]:
        html = httpx.get(f"{deployment.url}/", timeout=10).text
        found = sorted(set(re.findall(r'/_next/static/[^"\s]+?\.(?:js|css)', html)))
        assert found, "the page names no static chunk"
        return found

    chunks_by_release.append(current_chunks())
    for number in range(1, 4):
        # A visible change, so the page's own chunk gets a new content hash.
        page.write_text(
            re.sub(r"<h1>Dev cockpit[^<]*</h1>", f"<h1>Dev cockpit {number}</h1>", page.read_text())
        )
        with load(deployment, "/", "/api/db") as during:
            deployment.project.up()
        assert_clean(during.report)
        if number == 1:
            record("frontend_rollout", during.report)
        chunks_by_release.append(current_chunks())
        # The release before this one still finds every chunk it asked for.
        with httpx.Client(base_url=deployment.url, timeout=5) as client:
            for chunk in chunks_by_release[-2]:
                response = client.get(chunk)
                assert response.status_code == 200, chunk
                assert "immutable" in response.headers["cache-control"]
    # After three rollouts, the first release is one of the kept three (keepAssetReleases).
    with httpx.Client(base_url=deployment.url, timeout=5) as client:
        for chunk in chunks_by_release[1]:
            assert client.get(chunk).status_code == 200, chunk
    assert chunks_by_release[0] != chunks_by_release[-1], "the page never changed"


def test_report_the_traffic_measurements() -> None:
    print("\nE2E traffic measurements:", json.dumps(MEASURED, indent=2))

"""Every resource the program registers is exactly the reviewed one under golden/.

A resource's type, name and parent make its URN, and a changed input can replace it: a refactor
that moved one would make the next `pulumi up` on an existing stack replace containers. The
program runs on mocks with each committed Pulumi.<stack>.yaml (and once with the optional
branches taken), and every registered resource is written down with its options and its inputs
as sent to the engine, in URN order (registration order is not behaviour); secret values
appear as a marker. A deliberate change shows up as a diff
to review; regenerate with `ASTATS_WRITE_GOLDEN=1 pytest tests/unit/test_resource_golden.py`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.nginx import RUN_SCRIPT
from tests.pulumi_harness import DEV_SECRETS, ROOT, SECRET_SIG, Graph, evaluate
from tests.support.golden import assert_matches_golden

GOLDEN = Path(__file__).resolve().parent / "golden"
SECRET = "<secret>"
EVERY_SECRET = DEV_SECRETS | {
    "backupS3AccessKeyId": "AKIA-golden",
    "backupS3SecretAccessKey": "golden",
    "backupAlertWebhookUrl": "https://hooks.example.org/golden?token=t",
}
NGINX_FILES_STEP = "nginx-write-files"


def stack_settings(stack: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.removeprefix("astats:"): v for k, v in data.items() if k.startswith("astats:")}


def other_branches() -> dict[str, Any]:
    """The dev stack with the branches neither committed stack takes: host ports, adopted
    volume names, no scheduled backups."""
    settings = stack_settings("dev")
    settings["backend"] = {**settings["backend"], "hostPort": 18000}
    settings["frontend"] = {**settings["frontend"], "hostPort": 13000}
    settings["database"] = {**settings["database"], "volumeName": "compose_pgdata"}
    settings["backup"] = {**settings["backup"], "enabled": False, "volumeName": "compose_backups"}
    return settings


CASES = {
    "dev": ("dev", stack_settings("dev"), DEV_SECRETS),
    "prod": ("prod", stack_settings("prod"), EVERY_SECRET),
    "other-branches": ("dev", other_branches(), DEV_SECRETS),
}


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return SECRET
        return {k: _masked(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _pinned_elsewhere(name: str, inputs: dict[str, Any], stack: str) -> dict[str, Any]:
    """nginx.conf's text is reviewed in golden/nginx.<stack>.conf, and its entrypoint script in
    components/files/; refer to them rather than copy them (in base64, on the stdin of the step
    that writes them), so a deliberate change to either is reviewed in one place."""
    if name != NGINX_FILES_STEP or not isinstance(inputs.get("stdin"), str):
        return inputs
    nginx_golden = GOLDEN / f"nginx.{stack}.conf"
    pinned = {
        base64.b64encode(nginx_golden.read_bytes()).decode(): f"<golden/{nginx_golden.name}>",
        base64.b64encode(RUN_SCRIPT.encode()).decode(): "<components/files/nginx-run.sh>",
    }
    lines = []
    for line in inputs["stdin"].splitlines():
        file, _, content = line.partition(" ")
        lines.append(f"{file} {pinned.get(content, content)}")
    inputs["stdin"] = "".join(f"{line}\n" for line in lines)
    return inputs


def resource_record(graph: Graph, stack: str) -> list[dict[str, Any]]:
    return [
        {
            "type": r.type,
            "name": r.name,
            "urn": r.urn,
            "parent": r.parent,
            "custom": r.custom,
            "dependencies": sorted(r.dependencies),
            "deleteBeforeReplace": r.delete_before_replace,
            "replaceOnChanges": sorted(r.replace_on_changes),
            "retainOnDelete": r.retain_on_delete,
            "protect": r.protect,
            "inputs": _pinned_elsewhere(r.name, _masked(r.wire), stack),
        }
        for r in sorted(graph.resources, key=lambda r: r.urn)
    ]


def registered(case: str) -> str:
    stack, settings, secrets = CASES[case]
    record = resource_record(evaluate(settings, secrets, stack=stack), stack)
    return json.dumps(record, indent=1, sort_keys=True) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_registered_resource_is_the_reviewed_one(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Builds name the machine's platform; the record is the same on every machine.
    monkeypatch.setattr("components.image.host_platform", lambda: "linux/amd64")
    assert_matches_golden(GOLDEN / f"resources.{case}.json", registered(case), "registered")

"""The preview JSON fixtures of `astats plan`, captured from the real engine by
tests/e2e/test_plan.py (ASTATS_CAPTURE_PLAN=1) and kept in tests/console/fixtures/plan/.

What is kept of each step is what the plan reads (op, urn, the diff, the resource's type, its
name and healthcheck, its dependencies, whether the old one is pending replacement); the stack's
name becomes `plan`, the host port 8080, and nothing else of the machine (paths, times, ids,
providers, outputs) is kept. Secret config values are `[secret]` in the preview already.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "plan"
STACK = "plan"
STEP_KEYS = ("op", "urn", "replaceReasons", "diffReasons", "detailedDiff", "oldState", "newState")
STATE_KEYS = ("type", "pendingReplacement", "retainOnDelete", "protect", "dependencies")
INPUT_KEYS = ("name", "healthcheck")


def _state(state: dict[str, Any]) -> dict[str, Any]:
    kept = {k: state[k] for k in STATE_KEYS if k in state}
    inputs = state.get("inputs") or {}
    kept["inputs"] = {k: inputs[k] for k in INPUT_KEYS if k in inputs}
    return kept


def sanitize(preview: dict[str, Any], stack: str, port: int) -> dict[str, Any]:
    steps = []
    for step in preview.get("steps") or []:
        kept = {k: step[k] for k in STEP_KEYS if k in step}
        for which in ("oldState", "newState"):
            if which in kept:
                kept[which] = _state(kept[which])
        steps.append(kept)
    diagnostics = [
        {k: d[k] for k in ("urn", "severity", "message") if k in d}
        for d in preview.get("diagnostics") or []
    ]
    kept_all = {
        "config": preview.get("config") or {},
        "steps": steps,
        "diagnostics": diagnostics,
        "changeSummary": preview.get("changeSummary") or {},
    }
    text = json.dumps(kept_all, indent=1, sort_keys=True)
    text = text.replace(stack, STACK).replace(str(port), "8080")
    text = re.sub(r"(?:/tmp|/var/tmp|/home|/root)/[^\s\"]*", "<path>", text)
    return dict(json.loads(text))


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.json").read_text()))


def save(name: str, preview: dict[str, Any], stack: str, port: int) -> None:
    text = json.dumps(sanitize(preview, stack, port), indent=1, sort_keys=True)
    (FIXTURES / f"{name}.json").write_text(text + "\n")

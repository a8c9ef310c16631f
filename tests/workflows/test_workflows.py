"""The CI workflows pass actionlint, actionlint really fails on a broken workflow, and the
workflows keep the promises operators rely on (pinned actions, least privilege, one rollout per
stack at a time, no Pulumi Cloud token)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pulumi_harness import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
LINT = ROOT / "scripts" / "lint-workflows"
PINNED = re.compile(r"^\s*-?\s*uses:\s*[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    if not (shutil.which("node") and shutil.which("npm")):
        message = "scripts/lint-workflows needs node and npm (apt-get install nodejs npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(
        [str(LINT), *map(str, paths)], capture_output=True, text=True, timeout=300, check=False
    )


def workflow(name: str) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    data["on"] = data.pop(True)
    return data


def test_the_workflows_pass_actionlint() -> None:
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 workflow file(s) OK" in result.stdout


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\n"
        "permissions:\n"
        "  contents: reed\n"
        "jobs:\n"
        "  check:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ steps.missing.outputs.value }}\n"
    )
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{broken}:3:13:" in result.stdout
    assert 'property "missing" is not defined' in result.stdout
    assert "2 problem(s)" in result.stdout


def test_only_our_own_runner_label_is_accepted(tmp_path: Path) -> None:
    job = "    steps:\n      - run: 'true'\n"
    (tmp_path / "ours.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: [self-hosted, linux, astats-docker]\n" + job
    )
    (tmp_path / "typo.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: [self-hosted, linux, astats-dokcer]\n" + job
    )
    assert lint(tmp_path / "ours.yml").returncode == 0
    result = lint(tmp_path / "typo.yml")
    assert result.returncode == 1
    assert 'label "astats-dokcer" is unknown' in result.stdout


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        uses = [line for line in path.read_text().splitlines() if "uses:" in line]
        assert uses, path
        for line in uses:
            assert PINNED.match(line), f"{path.name}: {line.strip()}"


def test_only_the_preview_job_may_write_to_pull_requests() -> None:
    for name in ("preview.yml", "deploy.yml"):
        assert workflow(name)["permissions"] == {"contents": "read"}
    preview_jobs = workflow("preview.yml")["jobs"]
    assert preview_jobs["preview"]["permissions"] == {
        "contents": "read",
        "pull-requests": "write",
    }
    assert "permissions" not in preview_jobs["test"]
    assert "permissions" not in workflow("deploy.yml")["jobs"]["up"]


def test_the_preview_comments_once_per_pull_request_with_the_plan_above_the_diff() -> None:
    preview = workflow("preview.yml")["jobs"]["preview"]
    steps = preview["steps"]
    pulumi = next(s for s in steps if s.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["diff"] is True
    assert pulumi["with"]["comment-on-pr"] is False, "the plan's comment carries the diff"
    assert pulumi["with"]["policyPacks"] == "policy"
    assert any("policy/venv/bin/pip install" in s.get("run", "") for s in steps)
    names = [s.get("name") for s in steps]
    plan = steps[names.index("astats plan")]
    assert "plan --markdown >plan.md" in plan["run"]
    post = steps[names.index("Post the plan and the diff as one comment")]
    assert names.index("astats plan") < names.index(post["name"])
    assert post["env"]["PREVIEW_OUTPUT"] == "${{ steps.preview.outputs.output }}"
    assert "scripts/pr_comment.py plan.md" in post["run"]
    danger = steps[names.index("Data at risk needs a restore plan before merging")]
    assert danger["if"] == "steps.plan.outputs.exit == '3'"


def test_two_rollouts_of_one_stack_never_run_at_once() -> None:
    deploy = workflow("deploy.yml")
    assert set(deploy["on"]) == {"push", "workflow_dispatch"}
    job = deploy["jobs"]["up"]
    assert "astats-docker" in job["runs-on"]
    assert job["concurrency"]["cancel-in-progress"] is False
    assert "inputs.stack" in job["concurrency"]["group"]
    pulumi = next(s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "up"
    assert pulumi["with"]["policyPacks"] == "policy"
    assert any("policy/venv/bin/pip install" in s.get("run", "") for s in job["steps"])


def test_state_and_secrets_need_no_pulumi_cloud_token() -> None:
    for name in ("preview.yml", "deploy.yml"):
        text = (WORKFLOWS / name).read_text()
        assert "PULUMI_ACCESS_TOKEN" not in text
        assert "PULUMI_BACKEND_URL: ${{ vars.PULUMI_BACKEND_URL }}" in text
        assert "PULUMI_CONFIG_PASSPHRASE: ${{ secrets.PULUMI_CONFIG_PASSPHRASE }}" in text

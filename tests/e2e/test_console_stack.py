"""The console picks the stack the real Pulumi CLI has selected (it needs the CLI: e2e only)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from astats_console.stack import default_stack_name


def test_the_stack_defaults_to_the_selected_pulumi_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pulumi = shutil.which("pulumi")
    assert pulumi is not None, "scripts/e2e's preflight checks the CLI is on PATH"
    project = tmp_path / "project"
    (project / ".pulumi-state").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: console-test\nruntime: python\n")
    env = {
        "PULUMI_BACKEND_URL": f"file://{project / '.pulumi-state'}",
        "PULUMI_CONFIG_PASSPHRASE": "test",
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # No stack selected yet: the CLI fails, and the console falls back.
    assert default_stack_name(project) == "dev"
    subprocess.run(
        [pulumi, "stack", "init", "staging", "--non-interactive"],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # scripts/up's file backend beside Pulumi.yaml is found without PULUMI_BACKEND_URL, from
    # anywhere in the project.
    monkeypatch.delenv("PULUMI_BACKEND_URL")
    (project / "sub").mkdir()
    assert default_stack_name(project / "sub") == "staging"

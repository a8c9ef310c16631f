"""The Pulumi CLI as the console runs it: `scripts/pulumi` from the project directory (its
state and passphrase), else the `pulumi` on PATH, always scoped to the stack and never asking.
The restore's switch, the rollback, `astats plan` and `astats releases` go through here."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from astats_console.errors import ConsoleError, one_line

TIMEOUT_S = 1800


def project_dir(start: Path | None = None) -> Path:
    """The nearest directory up from here with a Pulumi.yaml."""
    here = start or Path.cwd()
    for directory in (here, *here.parents):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    raise ConsoleError(
        "this runs the Pulumi CLI: run astats from the project directory (where Pulumi.yaml "
        "is); nothing was changed"
    )


def pulumi_argv(project: Path) -> list[str]:
    """scripts/pulumi (the project's state and passphrase), else the CLI on PATH."""
    wrapper = project / "scripts" / "pulumi"
    if wrapper.is_file():
        return [str(wrapper)]
    found = shutil.which("pulumi")
    if found is None:
        raise ConsoleError("no pulumi CLI on PATH; nothing was changed")
    return [found]


def run_pulumi(
    project: Path, args: Sequence[str], stack: str, timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    argv = [*pulumi_argv(project), *args, "--stack", stack, "--non-interactive"]
    try:
        return subprocess.run(
            argv, cwd=project, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def said(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed run said, in one line: its last error line, else its last line."""
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return one_line((errors or lines or [f"exit code {result.returncode}"])[-1])

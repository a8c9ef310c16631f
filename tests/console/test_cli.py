"""Bad input gets one clear line and changes nothing; the console script is installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from astats_console.stack import default_stack_name

REPO = Path(__file__).resolve().parents[2]


def astats(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "astats_console", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["logs", "--since", "10x"], "argument --since: '10x' is neither a duration"),
        (["logs", "--grep", "(unclosed"], "argument --grep: '(unclosed' is not a regular"),
        (["logs", "--tail", "-3"], "argument --tail: '-3' is not a whole number"),
        (["status", "--disk-threshold", "120"], "is not a percentage between 0 and 100"),
        (["watch", "--webhook", "ftp://127.0.0.1/x"], "must be an http:// or https:// URL"),
        (["watch", "--window", "0s"], "'0s' must be longer than zero"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    result = astats(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_no_engine_is_one_line() -> None:
    result = astats("status", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1
    assert result.stderr.startswith(
        "astats status: error: no Docker engine answers at unix:///nonexistent/docker.sock"
    )
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_the_console_script_is_installed_by_the_setup() -> None:
    script = Path(sys.executable).parent / "astats"
    assert script.is_file(), "scripts/bootstrap installs the package editable into venv"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0
    for command in ("status", "logs", "backup", "backups", "restore", "psql", "shell", "watch"):
        assert command in result.stdout


def test_the_stack_defaults_to_dev_where_pulumi_cannot_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert default_stack_name(tmp_path) == "dev"

"""scripts/up's own logic: state and passphrase handling, dev secrets, clear failures.

The Pulumi CLI cannot be installed here, so `pulumi` and `docker` are stand-ins on PATH that
record how they were called; this tests the script, not a deployment.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

STUB_PULUMI = """#!/bin/sh
log="$STUB_DIR/pulumi.log"
printf '%s\\n' "$*" >>"$log"
case "$1 $2" in
  "config get") grep -qx "set $3" "$STUB_DIR/config" 2>/dev/null || exit 1 ;;
  "config set")
    value=$(cat)
    echo "set $4" >>"$STUB_DIR/config"
    printf '%s' "$value" >"$STUB_DIR/value-${4#astats:}" ;;
esac
exit 0
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the scripts beside a venv that already satisfies scripts/bootstrap."""
    work = tmp_path / "repo"
    (work / "scripts").mkdir(parents=True)
    for name in ("up", "bootstrap"):
        shutil.copy2(REPO / "scripts" / name, work / "scripts" / name)
    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        shutil.copy2(REPO / name, work / name)
    (work / "venv" / "bin").mkdir(parents=True)
    for program in ("python", "astats"):
        os.symlink(REPO / "venv" / "bin" / program, work / "venv" / "bin" / program)
    digest = subprocess.run(
        "cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1",
        shell=True,
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (work / "venv" / ".requirements.sha256").write_text(digest)
    return work


def stubs(tmp_path: Path, *, docker_ok: bool = True, with_pulumi: bool = True) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    programs = {"docker": f"#!/bin/sh\nexit {0 if docker_ok else 1}\n"}
    if with_pulumi:
        programs["pulumi"] = STUB_PULUMI
    for name, text in programs.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return bin_dir


def up(checkout: Path, bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    return subprocess.run(
        [str(checkout / "scripts" / "up"), *args],
        env={**clean, "PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_DIR": str(bin_dir), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_dev_gets_local_state_a_private_passphrase_and_generated_secrets(
    checkout: Path, tmp_path: Path
) -> None:
    bin_dir = stubs(tmp_path)
    result = up(checkout, bin_dir, "dev", "--yes")
    assert result.returncode == 0, result.stderr
    calls = (bin_dir / "pulumi.log").read_text().splitlines()
    assert calls[0] == "stack select --create --secrets-provider passphrase dev"
    assert calls[-1] == "up --yes"
    passphrase = checkout / ".pulumi-state" / "passphrase-dev"
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    assert len(passphrase.read_text().strip()) >= 32
    for key in ("dbPassword", "secretKey"):
        assert f"config set --secret astats:{key}" in calls
        assert len((bin_dir / f"value-{key}").read_text().strip()) >= 32
    # The secret went through stdin, never the command line.
    assert not any((bin_dir / "value-dbPassword").read_text().strip() in c for c in calls)


def test_second_run_keeps_passphrase_and_secrets(checkout: Path, tmp_path: Path) -> None:
    bin_dir = stubs(tmp_path)
    up(checkout, bin_dir)
    passphrase = (checkout / ".pulumi-state" / "passphrase-dev").read_text()
    (bin_dir / "pulumi.log").unlink()
    assert up(checkout, bin_dir).returncode == 0
    assert (checkout / ".pulumi-state" / "passphrase-dev").read_text() == passphrase
    assert not any("config set" in c for c in (bin_dir / "pulumi.log").read_text().splitlines())


def test_other_stacks_get_no_generated_secrets(checkout: Path, tmp_path: Path) -> None:
    bin_dir = stubs(tmp_path)
    assert up(checkout, bin_dir, "prod").returncode == 0
    calls = (bin_dir / "pulumi.log").read_text()
    assert (
        "config set" not in calls
        and "stack select --create --secrets-provider passphrase prod" in calls
    )


def test_an_operator_passphrase_is_used_as_given(checkout: Path, tmp_path: Path) -> None:
    bin_dir = stubs(tmp_path)
    assert up(checkout, bin_dir, PULUMI_CONFIG_PASSPHRASE="given").returncode == 0
    assert not (checkout / ".pulumi-state" / "passphrase-dev").exists()


def test_missing_cli_or_docker_fails_clearly(checkout: Path, tmp_path: Path) -> None:
    no_cli = up(checkout, stubs(tmp_path / "a", with_pulumi=False))
    assert no_cli.returncode == 1 and "Pulumi CLI is not installed" in no_cli.stderr
    no_docker = up(checkout, stubs(tmp_path / "b", docker_ok=False))
    assert no_docker.returncode == 1 and "no Docker engine answers" in no_docker.stderr

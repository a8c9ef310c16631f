"""scripts/up and scripts/down: state and passphrase handling, dev secrets, clear failures.

The Pulumi CLI cannot be installed here, so `pulumi` is the fake in tests/shipped/fake_pulumi.py
and `docker` a stand-in that answers; this tests the scripts, not a deployment.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.shipped.checkout import Machine


def test_dev_gets_local_state_a_private_passphrase_and_generated_secrets(
    machine: Machine,
) -> None:
    result = machine.run("scripts/up", "dev", "--yes")
    assert result.returncode == 0, result.stderr
    calls = machine.calls()
    assert calls[0]["argv"][-5:] == [
        "select",
        "--create",
        "--secrets-provider",
        "passphrase",
        "dev",
    ]
    assert calls[-1]["argv"][:3] == ["up", "--stack", "dev"] and "--yes" in calls[-1]["argv"]
    passphrase = machine.root / ".pulumi-state" / "passphrase-dev"
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    assert len(passphrase.read_text().strip()) >= 32
    deployed = machine.deployed()
    for key in ("dbPassword", "secretKey"):
        value = deployed[f"astats:{key}"]
        assert len(value) >= 32
        # The secret went through stdin, never the command line.
        assert not any(value in " ".join(call["argv"]) for call in calls)
    sets = [call for call in calls if call["argv"][:2] == ["config", "set"]]
    assert len(sets) == 2 and all(call["stdin_value"] for call in sets)


def test_second_run_keeps_passphrase_and_secrets(machine: Machine) -> None:
    assert machine.run("scripts/up").returncode == 0
    passphrase = (machine.root / ".pulumi-state" / "passphrase-dev").read_text()
    first = machine.deployed()
    machine.log.unlink()
    assert machine.run("scripts/up").returncode == 0
    assert (machine.root / ".pulumi-state" / "passphrase-dev").read_text() == passphrase
    assert not any(call["argv"][:2] == ["config", "set"] for call in machine.calls())
    assert machine.deployed() == first


def test_a_shared_stack_is_not_made_by_scripts_up(machine: Machine) -> None:
    result = machine.run("scripts/up", "staging")
    assert result.returncode == 1
    assert "make it first: scripts/new-stack staging --from prod" in result.stderr
    assert not (machine.root / "Pulumi.staging.yaml").exists()
    assert not any(call["argv"][0] == "up" for call in machine.calls())


def test_other_stacks_get_no_generated_secrets(machine: Machine) -> None:
    made = machine.run(
        "scripts/pulumi", "stack", "init", "prod", "--secrets-provider", "passphrase"
    )
    assert made.returncode == 0, made.stderr
    result = machine.run("scripts/up", "prod")
    # prod has no secrets set: the program refuses, naming the first one.
    assert result.returncode != 0 and "astats:dbPassword: missing secret" in result.stderr
    assert not any(call["argv"][:2] == ["config", "set"] for call in machine.calls())
    assert (machine.root / "Pulumi.prod.yaml").read_text().count("encryptionsalt") == 1


def test_an_operator_passphrase_is_used_as_given(machine: Machine) -> None:
    assert machine.run("scripts/up", PULUMI_CONFIG_PASSPHRASE="given").returncode == 0
    assert not (machine.root / ".pulumi-state" / "passphrase-dev").exists()


def test_missing_cli_or_docker_fails_clearly(origin: Path, tmp_path: Path) -> None:
    no_cli = Machine.clone(origin, tmp_path / "a", with_pulumi=False)
    result = no_cli.run("scripts/up")
    assert result.returncode == 1 and "Pulumi CLI is not installed" in result.stderr
    no_docker = Machine.clone(origin, tmp_path / "b")
    (no_docker.bin_dir / "docker").write_text("#!/bin/sh\nexit 1\n")
    result = no_docker.run("scripts/up")
    assert result.returncode == 1 and "no Docker engine answers" in result.stderr


def test_down_destroys_the_stack_up_made_with_its_passphrase(machine: Machine) -> None:
    assert machine.run("scripts/up").returncode == 0
    result = machine.run("scripts/down", "dev", "--yes")
    assert result.returncode == 0, result.stderr
    last = machine.calls()[-1]
    assert last["argv"][:3] == ["destroy", "--stack", "dev"] and "--yes" in last["argv"]
    assert last["config"]["astats:dbPassword"]


def test_down_without_the_passphrase_says_which_file_is_missing(machine: Machine) -> None:
    result = machine.run("scripts/down")
    assert result.returncode == 1
    assert "no .pulumi-state/passphrase-dev" in result.stderr


@pytest.mark.parametrize("script", ["up", "down"])
def test_help_names_the_usage(machine: Machine, script: str) -> None:
    result = machine.run(f"scripts/{script}", "--help")
    assert result.returncode == 0 and f"Usage: scripts/{script} [stack]" in result.stdout
    assert machine.calls() == []


def test_options_without_a_stack_name_are_for_the_dev_stack(machine: Machine) -> None:
    result = machine.run("scripts/up", "--yes")
    assert result.returncode == 0, result.stderr
    assert machine.calls()[-1]["argv"][:5] == ["up", "--stack", "dev", "--yes", "--config-file"]
    down = machine.run("scripts/down", "--yes")
    assert down.returncode == 0, down.stderr
    assert machine.calls()[-1]["argv"][:4] == ["destroy", "--stack", "dev", "--yes"]

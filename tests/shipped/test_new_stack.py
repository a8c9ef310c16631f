"""scripts/new-stack: a new shared stack from another's settings keeps the salt its own init
wrote, inherits neither secrets nor an offsite prefix, sets each required secret from stdin,
and ends with a preview, never an `up`.

`pulumi` is the fake in tests/shipped/fake_pulumi.py (CI has no Pulumi CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.shipped.checkout import Machine, make_origin


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine.clone(make_origin(tmp_path), tmp_path / "ops")


def stack_file(machine: Machine, stack: str) -> dict[str, Any]:
    return dict(yaml.safe_load((machine.root / f"Pulumi.{stack}.yaml").read_text()))


def test_staging_from_prod_keeps_its_salt_and_gets_its_own_prefix_and_secrets(
    machine: Machine,
) -> None:
    answers = "\n\nAKIA-STAGING\nstaging-secret-key\n"
    result = machine.run(
        "scripts/new-stack", "staging", "--from", "prod", "--offsite-prefix", "astats/staging",
        stdin=answers,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    calls = machine.calls()
    init = next(call for call in calls if call["argv"][:2] == ["stack", "init"])
    staging = stack_file(machine, "staging")
    assert str(staging["encryptionsalt"]).startswith("v1:fake:")
    config = staging["config"]
    prod = stack_file(machine, "prod")["config"]
    assert config["astats:backend"] == prod["astats:backend"]
    s3 = config["astats:backup"]["s3"]
    assert s3["prefix"] == "astats/staging" and s3["bucket"] == "astats-prod-backups"
    assert init["argv"][2] == "staging"
    # Every required secret was set, from stdin, encrypted for staging.
    sets = [call for call in calls if call["argv"][:2] == ["config", "set"]]
    keys = [call["argv"][-1] for call in sets]
    assert keys == [
        "astats:dbPassword",
        "astats:secretKey",
        "astats:backupS3AccessKeyId",
        "astats:backupS3SecretAccessKey",
    ]
    assert all(call["stdin_value"] for call in sets)
    assert "AKIA-STAGING" not in " ".join(" ".join(call["argv"]) for call in calls)
    last = calls[-1]
    assert last["argv"][:4] == ["preview", "--diff", "--stack", "staging"]
    assert len(last["config"]["astats:dbPassword"]) >= 32  # generated: the answer was empty
    assert last["config"]["astats:backupS3AccessKeyId"] == "AKIA-STAGING"
    assert not any(call["argv"][0] == "up" for call in calls)


def test_it_refuses_to_inherit_the_offsite_prefix(machine: Machine) -> None:
    result = machine.run("scripts/new-stack", "staging", "--from", "prod", stdin="")
    assert result.returncode == 1
    assert "--offsite-prefix PREFIX" in result.stderr and "--no-offsite" in result.stderr
    assert machine.calls() == [] and not (machine.root / "Pulumi.staging.yaml").exists()


@pytest.mark.parametrize("prefix", ["astats/prod", "astats/prod/staging", "astats", "/"])
def test_it_refuses_a_prefix_overlapping_another_stacks(machine: Machine, prefix: str) -> None:
    result = machine.run(
        "scripts/new-stack", "staging", "--from", "prod", "--offsite-prefix", prefix, stdin=""
    )
    assert result.returncode == 1 and "overlaps stack 'prod'" in result.stderr
    assert machine.calls() == []


def test_another_bucket_may_use_any_prefix(machine: Machine) -> None:
    result = machine.run(
        "scripts/new-stack", "staging", "--from", "prod",
        "--offsite-prefix", "astats/prod", "--offsite-bucket", "astats-staging-backups",
        "--generate-secrets", stdin="AKIA\nsecret\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_no_offsite_drops_the_copies_and_their_secrets(machine: Machine) -> None:
    result = machine.run(
        "scripts/new-stack", "staging", "--from", "prod", "--no-offsite", "--generate-secrets"
    )
    assert result.returncode == 0, result.stderr
    config = stack_file(machine, "staging")["config"]
    assert "s3" not in config["astats:backup"]
    keys = [c["argv"][-1] for c in machine.calls() if c["argv"][:2] == ["config", "set"]]
    assert keys == ["astats:dbPassword", "astats:secretKey"]


def test_an_offsite_key_cannot_be_generated(machine: Machine) -> None:
    result = machine.run(
        "scripts/new-stack", "staging", "--from", "prod", "--offsite-prefix", "astats/staging",
        "--generate-secrets", stdin="\n",
    )  # fmt: skip
    assert result.returncode == 1
    assert "astats:backupS3AccessKeyId is required and cannot be generated" in result.stderr
    assert not any(call["argv"][0] == "preview" for call in machine.calls())


@pytest.mark.parametrize(
    ("name", "reason"),
    [("prod", "Pulumi.prod.yaml exists already"), ("dev-x", "per-machine stack name")],
)
def test_it_refuses_names_it_must_not_take(machine: Machine, name: str, reason: str) -> None:
    result = machine.run("scripts/new-stack", name, "--from", "prod", "--no-offsite")
    assert result.returncode == 1 and reason in result.stderr
    assert machine.calls() == []


def test_usage_errors_come_from_its_parser(machine: Machine) -> None:
    result = machine.run("scripts/new-stack", "staging")
    assert result.returncode == 2 and "--from" in result.stderr

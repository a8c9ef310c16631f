"""scripts/pulumi: the documented `pulumi` commands work from a new shell, and the per-machine
dev stacks keep their secrets out of git, so every clone comes up with its own passphrase.

`pulumi` is the fake in tests/shipped/fake_pulumi.py: it wants Pulumi Cloud without
PULUMI_BACKEND_URL, and it cannot read a secret made with another passphrase, as the CLI.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from tests.shipped.checkout import REPO, Machine, git


def machine_part(machine: Machine, stack: str = "dev") -> dict[str, Any]:
    return dict(yaml.safe_load((machine.root / f".pulumi-state/config/{stack}.yaml").read_text()))


def test_a_new_shell_reaches_the_stack_scripts_up_made(machine: Machine) -> None:
    assert machine.run("scripts/up").returncode == 0
    bare = machine.run("pulumi", "config", "get", "astats:dbPassword")
    assert bare.returncode != 0 and "PULUMI_ACCESS_TOKEN" in bare.stderr
    wrapped = machine.run("scripts/pulumi", "config", "get", "astats:dbPassword")
    assert wrapped.returncode == 0, wrapped.stderr
    assert wrapped.stdout.strip() == machine.deployed()["astats:dbPassword"]
    assert machine.run("scripts/pulumi", "preview", "--diff").returncode == 0
    assert machine.calls()[-1]["argv"][:2] == ["preview", "--diff"]


def test_two_clones_with_two_passphrases_both_come_up(origin: Path, tmp_path: Path) -> None:
    first = Machine.clone(origin, tmp_path / "first")
    assert first.run("scripts/up").returncode == 0
    assert first.status() == ""  # nothing of the run is for git
    # The first developer commits whatever git offers, and pushes.
    git(first.root, "add", "-A")
    git(first.root, "commit", "-q", "--allow-empty", "-m", "after scripts/up")
    git(first.root, "push", "-q", "origin", "HEAD")

    second = Machine.clone(origin, tmp_path / "second")
    result = second.run("scripts/up")
    assert result.returncode == 0, result.stderr
    secrets = [m.deployed()["astats:secretKey"] for m in (first, second)]
    assert secrets[0] != secrets[1]
    passphrases = [(m.root / ".pulumi-state/passphrase-dev").read_text() for m in (first, second)]
    assert passphrases[0] != passphrases[1]
    assert machine_part(first)["encryptionsalt"] != machine_part(second)["encryptionsalt"]
    # And the first one still comes up after pulling.
    git(first.root, "pull", "-q")
    assert first.run("scripts/up").returncode == 0


def test_a_salt_someone_committed_in_the_dev_settings_is_ignored(
    origin: Path, tmp_path: Path
) -> None:
    careless = Machine.clone(origin, tmp_path / "careless")
    settings = careless.root / "Pulumi.dev.yaml"
    data = yaml.safe_load(settings.read_text())
    data["encryptionsalt"] = "v1:fake:0000000000000000"
    data["config"]["astats:secretKey"] = {"secure": "00000000:c2VjcmV0"}
    settings.write_text(yaml.safe_dump(data))
    git(careless.root, "commit", "-q", "-am", "commit a salt")
    git(careless.root, "push", "-q", "origin", "HEAD")

    other = Machine.clone(origin, tmp_path / "other")
    result = other.run("scripts/up")
    assert result.returncode == 0, result.stderr
    assert other.deployed()["astats:secretKey"] != "secret"


def test_the_machine_part_is_private_and_holds_only_what_is_not_shared(machine: Machine) -> None:
    assert machine.run("scripts/up").returncode == 0
    path = machine.root / ".pulumi-state/config/dev.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    part = machine_part(machine)
    assert set(part) == {"encryptionsalt", "config"}
    assert set(part["config"]) == {"astats:dbPassword", "astats:secretKey"}


def test_a_setting_changed_here_stays_here_and_shared_changes_still_arrive(
    machine: Machine,
) -> None:
    assert machine.run("scripts/up").returncode == 0
    changed = machine.run("scripts/pulumi", "config", "set", "--path", "astats:nginx.httpPort", "9")
    assert changed.returncode == 0, changed.stderr
    assert machine.status() == ""
    assert machine_part(machine)["config"]["astats:nginx"] == {"httpPort": "9"}
    # A teammate changes the shared dev settings; the next run has both.
    settings = machine.root / "Pulumi.dev.yaml"
    settings.write_text(settings.read_text().replace("memoryMb: 768", "memoryMb: 900"))
    assert machine.run("scripts/up").returncode == 0
    deployed = machine.deployed()
    assert deployed["astats:nginx"]["httpPort"] == "9"
    assert deployed["astats:backend"]["memoryMb"] == 900
    assert deployed["astats:nginx"]["bindAddress"] == "127.0.0.1"


def test_secrets_an_earlier_scripts_up_wrote_into_the_dev_settings_are_taken_over(
    machine: Machine,
) -> None:
    assert machine.run("scripts/up").returncode == 0
    deployed = machine.deployed()
    # As the old scripts/up left it: this machine's salt and secrets in Pulumi.dev.yaml.
    part = machine_part(machine)
    settings = machine.root / "Pulumi.dev.yaml"
    data = yaml.safe_load(settings.read_text())
    data["encryptionsalt"] = part["encryptionsalt"]
    data["config"].update(part["config"])
    settings.write_text(yaml.safe_dump(data))
    (machine.root / ".pulumi-state/config/dev.yaml").unlink()
    result = machine.run("scripts/up")
    assert result.returncode == 0, result.stderr
    assert "git checkout Pulumi.dev.yaml" in result.stderr
    assert machine.deployed()["astats:secretKey"] == deployed["astats:secretKey"]


def test_a_developer_can_have_more_dev_stacks(machine: Machine) -> None:
    assert machine.run("scripts/up", "dev-feature").returncode == 0
    assert machine.status() == ""
    assert machine.calls()[-1]["stack"] == "dev-feature"
    assert machine.deployed()["astats:nginx"]["bindAddress"] == "127.0.0.1"
    assert not (machine.root / "Pulumi.dev-feature.yaml").exists()


def test_removing_the_dev_stack_keeps_the_shared_settings(machine: Machine) -> None:
    assert machine.run("scripts/up").returncode == 0
    assert machine.run("scripts/pulumi", "stack", "rm", "--yes", "dev").returncode == 0
    assert (machine.root / "Pulumi.dev.yaml").is_file() and machine.status() == ""
    # Made again, it finds the same secrets (the salt is kept with this machine's part).
    before = machine.deployed()["astats:secretKey"]
    assert machine.run("scripts/up").returncode == 0
    assert machine.deployed()["astats:secretKey"] == before


def test_renaming_a_dev_stack_is_refused(machine: Machine) -> None:
    result = machine.run("scripts/pulumi", "stack", "rename", "other", "--stack", "dev")
    assert result.returncode == 1 and "cannot be renamed" in result.stderr
    assert machine.calls() == []


def test_shared_stacks_use_their_tracked_file_and_their_own_passphrase(machine: Machine) -> None:
    made = machine.run(
        "scripts/pulumi", "stack", "init", "prod", "--secrets-provider", "passphrase"
    )
    assert made.returncode == 0, made.stderr
    assert "encryptionsalt" in (machine.root / "Pulumi.prod.yaml").read_text()
    set_secret = machine.run(
        "scripts/pulumi", "config", "set", "--secret", "astats:dbPassword", stdin="pw\n"
    )
    assert set_secret.returncode == 0
    assert "secure" in (machine.root / "Pulumi.prod.yaml").read_text()
    assert (machine.root / ".pulumi-state/passphrase-prod").is_file()


def test_a_shared_stack_without_its_passphrase_is_not_given_a_new_one(machine: Machine) -> None:
    settings = machine.root / "Pulumi.prod.yaml"
    settings.write_text("encryptionsalt: v1:fake:someone-elses\n" + settings.read_text())
    result = machine.run("scripts/pulumi", "stack", "select", "--create", "prod")
    assert result.returncode == 1
    assert "put it in .pulumi-state/passphrase-prod" in result.stderr
    assert not (machine.root / ".pulumi-state/passphrase-prod").exists()


def test_dry_run_shows_what_would_run_and_runs_nothing(origin: Path, tmp_path: Path) -> None:
    machine = Machine.clone(origin, tmp_path / "dry", with_pulumi=False)
    result = machine.run("scripts/pulumi", "--dry-run", "preview", "--diff", "--stack", "dev")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"PULUMI_BACKEND_URL=file://{machine.root}/.pulumi-state" in lines
    program, *args = lines[-1].split()
    assert program == "pulumi" and args[:5] == [
        "preview",
        "--diff",
        "--stack",
        "dev",
        "--config-file",
    ]
    assert not (machine.root / ".pulumi-state").exists()
    shared = machine.run("scripts/pulumi", "--dry-run", "stack", "output", "--stack", "prod")
    assert shared.stdout.splitlines()[-1] == "pulumi stack output --stack prod"


def test_without_the_cli_it_says_so(origin: Path, tmp_path: Path) -> None:
    machine = Machine.clone(origin, tmp_path / "nocli", with_pulumi=False)
    result = machine.run("scripts/pulumi", "stack", "ls")
    assert result.returncode == 1 and "Pulumi CLI is not installed" in result.stderr


def test_the_tracked_dev_settings_carry_no_salt_and_no_secret() -> None:
    settings = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())
    assert "encryptionsalt" not in settings
    secure = [k for k, v in settings["config"].items() if isinstance(v, dict) and "secure" in v]
    assert secure == []

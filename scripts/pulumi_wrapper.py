"""What `scripts/pulumi` does: run the Pulumi CLI the way every script of this project runs it.

- The state backend is `.pulumi-state/` beside Pulumi.yaml unless PULUMI_BACKEND_URL is set.
- The passphrase of stack S is `.pulumi-state/passphrase-S` unless PULUMI_CONFIG_PASSPHRASE or
  PULUMI_CONFIG_PASSPHRASE_FILE is set; a command that creates a stack generates that file.
- The per-machine stacks, `dev` and `dev-<name>`, keep their secrets out of git. Their settings
  are the tracked Pulumi.dev.yaml; this machine's part (the passphrase's encryptionsalt, the
  secrets and any setting changed here) lives in `.pulumi-state/config/<stack>.yaml`. Each
  command gets both, merged, as its stack config file (`--config-file`, or a scratch project
  for the `stack` commands that write the stack file and have no such flag), and whatever the
  command changed is kept in the machine's part, never in a tracked file.

Every other argument goes to `pulumi` as given. `scripts/pulumi --dry-run ARGS...` prints the
environment and command it would run, and runs nothing.
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".pulumi-state"
MACHINE_CONFIG = STATE / "config"
SHARED_DEV_SETTINGS = ROOT / "Pulumi.dev.yaml"
PASSPHRASE_VARIABLES = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")

# Commands that read the stack config file and take --config-file (aliases included).
CONFIG_FILE_COMMANDS = frozenset(
    {"up", "update", "preview", "pre", "destroy", "down", "dn", "refresh", "import", "watch"}
    | {"logs", "config"}
)
# `stack` subcommands that write the stack config file and take no --config-file.
STACK_FILE_WRITERS = frozenset({"init", "change-secrets-provider", "import", "rm", "remove"})
# Commands that need no stack, so no selected stack is looked up for them.
STACKLESS = frozenset(
    {"version", "plugin", "login", "logout", "whoami", "help", "gen-completion", "new", "about"}
)
# Flags of the commands above that take a value, so the value is not taken for a stack name.
VALUE_FLAGS = frozenset({"--secrets-provider", "--copy-config-from", "--teams", "--cwd", "-C"})


class WrapperError(Exception):
    """A one-line reason the command was not run."""


def is_machine_stack(stack: str) -> bool:
    """`dev` and `dev-<name>`: one per developer machine, secrets never shared."""
    return stack == "dev" or stack.startswith("dev-")


def _value_after(args: Sequence[str], *names: str) -> str | None:
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
                return arg[len(name) :]
    return None


def _positionals(args: Sequence[str]) -> list[str]:
    found: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in VALUE_FLAGS or arg in ("--stack", "-s"):
            skip = True
        elif not arg.startswith("-"):
            found.append(arg)
    return found


@dataclass
class Command:
    """One `pulumi` command line, as the operator typed it, and what it is about."""

    args: list[str]
    words: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.words = _positionals(self.args)

    @property
    def verb(self) -> str:
        return self.words[0] if self.words else ""

    @property
    def stack_subcommand(self) -> str:
        return self.words[1] if self.verb == "stack" and len(self.words) > 1 else ""

    @property
    def creates_stack(self) -> bool:
        sub = self.stack_subcommand
        return sub == "init" or (sub == "select" and bool({"-c", "--create"} & set(self.args)))

    @property
    def named_stack(self) -> str | None:
        """The stack named on the command line, if any."""
        given = _value_after(self.args, "--stack", "-s")
        if given:
            return given
        if self.stack_subcommand in {"init", "select", "rm", "remove"} and len(self.words) > 2:
            return self.words[2]
        return None

    @property
    def needs_stack(self) -> bool:
        return (
            bool(self.verb)
            and self.verb not in STACKLESS
            and not ({"-h", "--help"} & set(self.args))
            and self.stack_subcommand not in {"ls", "list"}
        )


def selected_stack(env: dict[str, str]) -> str | None:
    """The stack `pulumi` would use here when none is named (None: none is selected)."""
    pulumi = shutil.which("pulumi", path=env.get("PATH"))
    if pulumi is None:
        return None
    done = subprocess.run(
        [pulumi, "stack", "--show-name", "--non-interactive"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    name = done.stdout.strip()
    return name if done.returncode == 0 and name and len(name.split()) == 1 else None


def passphrase_file(stack: str) -> Path:
    return STATE / f"passphrase-{stack}"


def state_env(stack: str | None, *, create: bool, dry_run: bool) -> dict[str, str]:
    """The backend and passphrase variables this command runs with."""
    env: dict[str, str] = {}
    if not os.environ.get("PULUMI_BACKEND_URL"):
        env["PULUMI_BACKEND_URL"] = f"file://{STATE}"
    if any(os.environ.get(name) for name in PASSPHRASE_VARIABLES) or stack is None:
        return env
    path = passphrase_file(stack)
    if not path.is_file() or not path.read_text().strip():
        if not create:
            return env  # pulumi asks for it on a terminal, or names the variables to set
        if not is_machine_stack(stack) and _read_yaml(ROOT / f"Pulumi.{stack}.yaml").get(
            "encryptionsalt"
        ):
            raise WrapperError(
                f"Pulumi.{stack}.yaml is encrypted with stack {stack!r}'s passphrase: put it "
                f"in {path.relative_to(ROOT)} (mode 600) or set PULUMI_CONFIG_PASSPHRASE_FILE"
            )
        if not dry_run:
            STATE.mkdir(mode=0o700, exist_ok=True)
            old = os.umask(0o077)
            try:
                path.write_text(secrets.token_urlsafe(32) + "\n")
            finally:
                os.umask(old)
            print(
                f"scripts/pulumi: generated {path.relative_to(ROOT)}; back it up, the "
                f"secrets of stack {stack!r} need it",
                file=sys.stderr,
            )
    env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(path)
    return env


def _is_leaf(value: Any) -> bool:
    return not isinstance(value, dict) or set(value) == {"secure"}


def merged(shared: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    """`shared` with every value of `mine` laid over it, map by map."""
    result = copy.deepcopy(shared)
    for key, value in mine.items():
        if key in result and not _is_leaf(result[key]) and not _is_leaf(value):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def difference(effective: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """What `effective` has that `shared` has not, or has otherwise (map by map)."""
    result: dict[str, Any] = {}
    for key, value in effective.items():
        if key not in shared:
            result[key] = copy.deepcopy(value)
        elif not _is_leaf(value) and not _is_leaf(shared[key]):
            inner = difference(value, shared[key])
            if inner:
                result[key] = inner
        elif value != shared[key]:
            result[key] = copy.deepcopy(value)
    return result


def removed(effective: dict[str, Any], shared: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys of `shared` that `effective` no longer has."""
    gone = []
    for key, value in shared.items():
        if key not in effective:
            gone.append(prefix + key)
        elif not _is_leaf(value) and not _is_leaf(effective[key]):
            gone += removed(effective[key], value, f"{prefix}{key}.")
    return gone


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise WrapperError(f"{path} is not a YAML mapping")
    return loaded


def _write_yaml(path: Path, data: dict[str, Any], header: str = "") -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        path.write_text(header + yaml.safe_dump(data, sort_keys=True, default_flow_style=False))
    finally:
        os.umask(old)


def shared_settings() -> dict[str, Any]:
    """The tracked dev settings; a salt or secret in them belongs to some machine: ignored."""
    config = dict(_read_yaml(SHARED_DEV_SETTINGS).get("config") or {})
    return {k: v for k, v in config.items() if not (isinstance(v, dict) and "secure" in v)}


MACHINE_HEADER = (
    "# This machine's part of a per-machine stack (scripts/pulumi): the encryptionsalt of its\n"
    "# passphrase, its secrets and the settings changed here. The rest is Pulumi.dev.yaml.\n"
)


def committed_salt() -> str | None:
    """The encryptionsalt in the committed Pulumi.dev.yaml (None: none, or not a checkout)."""
    shown = subprocess.run(
        ["git", "show", f"HEAD:{SHARED_DEV_SETTINGS.name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0:
        return None
    loaded = yaml.safe_load(shown.stdout) or {}
    salt = loaded.get("encryptionsalt") if isinstance(loaded, dict) else None
    return str(salt) if salt else None


def machine_file(stack: str) -> Path:
    return MACHINE_CONFIG / f"{stack}.yaml"


def machine_part(stack: str) -> dict[str, Any]:
    """This machine's part of `stack`. The first time, a salt and secrets that an earlier
    scripts/up wrote into Pulumi.dev.yaml on this machine are taken over from there."""
    path = machine_file(stack)
    if path.is_file():
        return _read_yaml(path)
    tracked = _read_yaml(SHARED_DEV_SETTINGS)
    config = tracked.get("config") or {}
    secure = {k: v for k, v in config.items() if isinstance(v, dict) and "secure" in v}
    if stack != "dev" or not (tracked.get("encryptionsalt") or secure):
        return {}
    if tracked.get("encryptionsalt") == committed_salt():
        return {}  # someone else's, committed: this machine's passphrase cannot open it
    print(
        "scripts/pulumi: took this machine's encryptionsalt and secrets out of Pulumi.dev.yaml "
        f"into {path.relative_to(ROOT)}; restore the tracked file: git checkout Pulumi.dev.yaml",
        file=sys.stderr,
    )
    part: dict[str, Any] = {"config": secure}
    if tracked.get("encryptionsalt"):
        part["encryptionsalt"] = tracked["encryptionsalt"]
    _write_yaml(path, part, MACHINE_HEADER)
    return part


def effective_config(stack: str) -> dict[str, Any]:
    """The stack file `pulumi` reads: the shared settings with this machine's part over them."""
    mine = machine_part(stack)
    result: dict[str, Any] = {}
    if mine.get("encryptionsalt"):
        result["encryptionsalt"] = mine["encryptionsalt"]
    result["config"] = merged(shared_settings(), mine.get("config") or {})
    return result


def keep_machine_part(stack: str, after: dict[str, Any]) -> None:
    """Store what a command left in the stack file: everything but the shared settings."""
    shared = shared_settings()
    config = after.get("config") or {}
    part: dict[str, Any] = {}
    if after.get("encryptionsalt"):
        part["encryptionsalt"] = after["encryptionsalt"]
    part["config"] = difference(config, shared)
    if part != _read_yaml(machine_file(stack)) or not machine_file(stack).exists():
        _write_yaml(machine_file(stack), part, MACHINE_HEADER)
    for key in removed(config, shared):
        print(
            f"scripts/pulumi: {key} comes from Pulumi.dev.yaml (shared); removing it here "
            "does not last: change it in Pulumi.dev.yaml",
            file=sys.stderr,
        )


@dataclass
class Plan:
    """What runs: `args` for `pulumi`, with `env` over the caller's environment. For a
    per-machine stack the merged stack file goes on the command line (`config_file`) or into
    a scratch project the command runs in (`scratch`), and after a stack was created there
    it is selected here too (`select_after`)."""

    args: list[str]
    env: dict[str, str]
    stack: str | None
    config_file: bool = False
    scratch: bool = False
    select_after: str | None = None

    def argv(self, stack_file: Path) -> list[str]:
        if self.config_file:
            return ["pulumi", *self.args, "--config-file", str(stack_file)]
        if self.scratch:
            unnamed = self.stack is not None and Command(self.args).named_stack is None
            named = ["--stack", str(self.stack)] if unnamed else []
            return ["pulumi", "--cwd", str(stack_file.parent), *self.args, *named]
        return ["pulumi", *self.args]


def plan(args: list[str], *, dry_run: bool) -> Plan:
    command = Command(args)
    stack = command.named_stack
    if stack is None and command.needs_stack and not dry_run:
        probe = dict(os.environ) | state_env(None, create=False, dry_run=True)
        stack = selected_stack(probe)
    env = state_env(stack, create=command.creates_stack, dry_run=dry_run)
    result = Plan(args=args, env=env, stack=stack)
    if stack is None or not is_machine_stack(stack):
        return result
    if command.stack_subcommand == "rename":
        raise WrapperError(
            f"stack {stack!r} is a per-machine stack whose settings are Pulumi.dev.yaml; it "
            "cannot be renamed: make another one with scripts/up dev-<name>"
        )
    if command.verb in CONFIG_FILE_COMMANDS and not _value_after(args, "--config-file"):
        result.config_file = True
    elif command.stack_subcommand in STACK_FILE_WRITERS or command.creates_stack:
        result.scratch = True
        if command.creates_stack and "--no-select" not in args:
            result.select_after = stack
    return result


def describe(plan: Plan) -> str:
    lines = [f"{name}={value}" for name, value in sorted(plan.env.items())]
    if plan.stack is None:
        lines.append("# stack: the selected one (a dry run does not look it up)")
    elif is_machine_stack(plan.stack):
        lines.append(
            f"# stack {plan.stack}: per-machine; its stack file is Pulumi.dev.yaml with "
            f"{machine_file(plan.stack).relative_to(ROOT)} over it"
        )
    work = STATE / "scratch" / str(plan.stack) if plan.scratch else STATE / "run-XXXX"
    lines.append(" ".join(plan.argv(work / f"Pulumi.{plan.stack}.yaml")))
    if plan.select_after:
        lines.append(f"pulumi stack select {plan.select_after}")
    return "\n".join(lines)


def run(plan: Plan) -> int:
    env = dict(os.environ) | plan.env
    if env["PULUMI_BACKEND_URL"] == f"file://{STATE}":
        STATE.mkdir(mode=0o700, exist_ok=True)
    stack = plan.stack
    if stack is None or not (plan.config_file or plan.scratch):
        return subprocess.run(plan.argv(ROOT), cwd=ROOT, env=env, check=False).returncode
    STATE.mkdir(mode=0o700, exist_ok=True)
    if plan.scratch:
        # One scratch project per stack: the CLI remembers a selected stack per project path,
        # so a new path on every run would leave a workspace file behind each time.
        work = STATE / "scratch" / stack
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(mode=0o700, parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="run-", dir=STATE))
    try:
        stack_file = work / f"Pulumi.{stack}.yaml"
        _write_yaml(stack_file, effective_config(stack))
        before = stack_file.read_text()
        if plan.scratch:
            shutil.copy2(ROOT / "Pulumi.yaml", work / "Pulumi.yaml")
        code = subprocess.run(plan.argv(stack_file), cwd=ROOT, env=env, check=False).returncode
        if stack_file.is_file() and stack_file.read_text() != before:
            keep_machine_part(stack, _read_yaml(stack_file))
        if code == 0 and plan.select_after:
            select = ["pulumi", "stack", "select", plan.select_after]
            code = subprocess.run(select, cwd=ROOT, env=env, check=False).returncode
        return code
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    dry_run = bool(args) and args[0] == "--dry-run"
    if dry_run:
        args = args[1:]
    try:
        planned = plan(args, dry_run=dry_run)
        if dry_run:
            print(describe(planned))
            return 0
        if shutil.which("pulumi") is None:
            raise WrapperError(
                "the Pulumi CLI is not installed; see README.md, Prerequisites "
                "(scripts/pulumi --dry-run shows what would run)"
            )
        return run(planned)
    except WrapperError as error:
        print(f"scripts/pulumi: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

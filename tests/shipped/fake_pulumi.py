"""A stand-in for the Pulumi CLI, for testing the scripts that drive it (CI has no CLI).

It keeps what the scripts depend on, as the real CLI does it:
- the project is the Pulumi.yaml in the working directory (`--cwd`/`-C` changes it);
- without PULUMI_BACKEND_URL it wants a Pulumi Cloud login, and fails;
- a file backend holds the stacks; the selected stack is remembered per project directory;
- a stack's config file is `--config-file`, else Pulumi.<stack>.yaml beside Pulumi.yaml;
- the passphrase (PULUMI_CONFIG_PASSPHRASE or _FILE) makes the file's `encryptionsalt` when it
  has none and must match it otherwise ("incorrect passphrase"), and secrets are encrypted
  with it, so another passphrase cannot read them;
- `up`, `preview` and `destroy` read every secret, and `up`/`preview` want the program's
  required ones.

Each call is appended to $FAKE_PULUMI_LOG as one JSON line: argv, cwd, the config it read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

REQUIRED = ("astats:dbPassword", "astats:secretKey")
VALUE_FLAGS = {"--stack", "-s", "--config-file", "--secrets-provider", "--cwd", "-C"}


def fail(message: str, code: int = 255) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def passphrase() -> str:
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        return os.environ["PULUMI_CONFIG_PASSPHRASE"]
    path = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if path:
        return Path(path).read_text().strip()
    fail(
        "passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
        "PULUMI_CONFIG_PASSPHRASE_FILE environment variables"
    )
    raise AssertionError


def salt_of(phrase: str) -> str:
    return "v1:fake:" + hashlib.sha256(phrase.encode()).hexdigest()[:16]


def parse(argv: list[str]) -> tuple[list[str], dict[str, str], set[str]]:
    words: list[str] = []
    values: dict[str, str] = {}
    flags: set[str] = set()
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in VALUE_FLAGS:
            values[arg.lstrip("-")] = argv[index + 1]
            index += 2
            continue
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            values[name] = value
        elif arg.startswith("-"):
            flags.add(arg)
        else:
            words.append(arg)
        index += 1
    return words, values, flags


class Fake:
    def __init__(self, argv: list[str]) -> None:
        self.words, self.values, self.flags = parse(argv)
        cwd = self.values.get("cwd") or self.values.get("C")
        if cwd:
            os.chdir(cwd)
        self.project = Path.cwd()
        self.record: dict[str, Any] = {"argv": argv, "cwd": str(self.project)}
        if not (self.project / "Pulumi.yaml").is_file():
            fail("no Pulumi.yaml project file found")
        backend = os.environ.get("PULUMI_BACKEND_URL", "")
        if not backend.startswith("file://"):
            fail(
                "PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI "
                "sessions (no PULUMI_BACKEND_URL: this wants Pulumi Cloud)"
            )
        self.stacks = Path(backend[len("file://") :]) / ".pulumi" / "stacks"
        self.workspace = Path(os.environ["FAKE_PULUMI_HOME"]) / "workspaces.json"

    def log(self) -> None:
        with open(os.environ["FAKE_PULUMI_LOG"], "a") as out:
            out.write(json.dumps(self.record) + "\n")

    def selections(self) -> dict[str, str]:
        return json.loads(self.workspace.read_text()) if self.workspace.is_file() else {}

    def select(self, stack: str) -> None:
        chosen = self.selections() | {str(self.project): stack}
        self.workspace.parent.mkdir(parents=True, exist_ok=True)
        self.workspace.write_text(json.dumps(chosen))

    def stack(self) -> str:
        named = self.values.get("stack") or self.values.get("s")
        if named:
            return named
        selected = self.selections().get(str(self.project))
        if selected is None:
            fail("no stack selected; please use `pulumi stack select`")
        return str(selected)

    def exists(self, stack: str) -> bool:
        return (self.stacks / stack).is_file()

    def config_path(self, stack: str) -> Path:
        given = self.values.get("config-file")
        return Path(given) if given else self.project / f"Pulumi.{stack}.yaml"

    def load(self, stack: str) -> dict[str, Any]:
        path = self.config_path(stack)
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
        return loaded or {}

    def save(self, stack: str, data: dict[str, Any]) -> None:
        self.config_path(stack).write_text(yaml.safe_dump(data, sort_keys=False))

    def unlock(self, data: dict[str, Any]) -> str:
        """The passphrase, checked against the file's salt (which it makes when missing)."""
        phrase = passphrase()
        salt = data.get("encryptionsalt")
        if salt is None:
            data["encryptionsalt"] = salt_of(phrase)
        elif salt != salt_of(phrase):
            fail("incorrect passphrase")
        return phrase

    def decrypt(self, data: dict[str, Any], value: Any) -> Any:
        if not (isinstance(value, dict) and set(value) == {"secure"}):
            return value
        phrase = self.unlock(data)
        key, _, text = str(value["secure"]).partition(":")
        if key != hashlib.sha256(phrase.encode()).hexdigest()[:8]:
            fail("failed to decrypt configuration value: incorrect passphrase")
        return base64.b64decode(text).decode()

    def create(self, stack: str) -> None:
        if self.exists(stack):
            fail(f"stack '{stack}' already exists")
        data = self.load(stack)
        self.unlock(data)
        self.save(stack, data)
        self.stacks.mkdir(parents=True, exist_ok=True)
        (self.stacks / stack).write_text("{}")
        self.select(stack)
        print(f"Created stack '{stack}'", file=sys.stderr)

    def main(self) -> None:
        words = self.words
        verb = words[0] if words else ""
        sub = words[1] if len(words) > 1 else ""
        if verb == "stack" and sub == "init":
            self.create(words[2])
        elif verb == "stack" and sub == "select":
            name = words[2]
            if self.exists(name):
                self.select(name)
            elif {"--create", "-c"} & self.flags:
                self.create(name)
            else:
                fail(f"no stack named '{name}' found")
        elif verb == "stack" and sub in ("rm", "remove"):
            name = words[2] if len(words) > 2 else self.stack()
            (self.stacks / name).unlink()
            if "--preserve-config" not in self.flags:
                self.config_path(name).unlink(missing_ok=True)
        elif verb == "stack" and "--show-name" in self.flags:
            print(self.stack())
        elif verb == "stack" and sub == "output":
            self.stack()
            print("{}")
        elif verb == "config":
            self.config(sub)
        elif verb in ("up", "preview", "destroy"):
            self.operation(verb)
        else:
            fail(f"the fake pulumi does not know {' '.join(words)!r}")

    def config(self, sub: str) -> None:
        stack = self.stack()
        if not self.exists(stack):
            fail(f"no stack named '{stack}' found")
        data = self.load(stack)
        config = data.setdefault("config", {}) or {}
        data["config"] = config
        key = self.words[2] if len(self.words) > 2 else ""
        if sub == "get":
            if key not in config:
                fail(f"configuration key '{key}' not found for stack '{stack}'", 1)
            print(self.decrypt(data, config[key]))
        elif sub == "set":
            value = self.words[3] if len(self.words) > 3 else sys.stdin.read().rstrip("\n")
            self.record["stdin_value"] = len(self.words) <= 3
            if "--secret" in self.flags:
                phrase = self.unlock(data)
                tag = hashlib.sha256(phrase.encode()).hexdigest()[:8]
                stored: Any = {"secure": f"{tag}:{base64.b64encode(value.encode()).decode()}"}
            else:
                stored = value
            if "--path" in self.flags:
                namespace, _, path = key.partition(":")
                first, *rest = path.split(".")
                node = config.setdefault(f"{namespace}:{first}", {})
                for part in rest[:-1]:
                    node = node.setdefault(part, {})
                node[rest[-1]] = stored
            else:
                config[key] = stored
            self.save(stack, data)
        else:
            fail(f"the fake pulumi does not know config {sub!r}")

    def operation(self, verb: str) -> None:
        stack = self.stack()
        if not self.exists(stack):
            fail(f"no stack named '{stack}' found")
        data = self.load(stack)
        config = {k: self.decrypt(data, v) for k, v in (data.get("config") or {}).items()}
        self.record["stack"] = stack
        self.record["config"] = config
        missing = [key for key in REQUIRED if key not in config]
        if verb != "destroy" and missing:
            fail(f"invalid configuration for namespace 'astats': {missing[0]}: missing secret")


if __name__ == "__main__":
    fake = Fake(sys.argv[1:])
    try:
        fake.main()
    finally:
        fake.log()

"""What `scripts/new-stack` does: a new shared stack made from an existing one's settings.

    scripts/new-stack NAME --from STACK [--offsite-prefix PREFIX [--offsite-bucket BUCKET]]
                                        [--no-offsite] [--generate-secrets]

1. `pulumi stack init NAME` (through scripts/pulumi) writes Pulumi.NAME.yaml with the
   encryptionsalt of NAME's passphrase; the settings of Pulumi.STACK.yaml are then added to
   that file, the salt kept. STACK's secrets are not copied: they are encrypted for STACK.
2. Offsite backups are never shared: when STACK has `backup.s3`, NAME needs its own prefix
   (`--offsite-prefix`), one that no other stack's bucket and prefix contains or lies under,
   or no offsite copies (`--no-offsite`). Remote pruning works on everything under a prefix.
3. Each required secret is asked for (a line on stdin, hidden on a terminal); an empty answer
   generates the database password or the secret key. `--generate-secrets` asks for none of
   those two. The values go to `pulumi config set --secret` on stdin, never on a command line.
4. It ends with `pulumi preview --diff` of the new stack: nothing is deployed.
"""

from __future__ import annotations

import argparse
import getpass
import re
import secrets
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = ROOT / "scripts" / "pulumi"
REQUIRED = ("dbPassword", "secretKey")
GENERATED = {"dbPassword": 32, "secretKey": 48}
OFFSITE = ("backupS3AccessKeyId", "backupS3SecretAccessKey")
STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class NewStackError(Exception):
    """A one-line reason nothing (more) was done."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/new-stack",
        description=(
            "Make a new shared stack from another stack's settings (salt kept, no secret "
            "copied, an offsite prefix of its own), set its secrets, and preview it."
        ),
    )
    p.add_argument("name", metavar="NAME", help="the new stack, e.g. staging")
    p.add_argument("--from", dest="source", required=True, metavar="STACK", help="e.g. prod")
    offsite = p.add_mutually_exclusive_group()
    offsite.add_argument(
        "--offsite-prefix", metavar="PREFIX", help="backup.s3.prefix of the new stack"
    )
    offsite.add_argument(
        "--no-offsite", action="store_true", help="drop backup.s3: no offsite copies"
    )
    p.add_argument("--offsite-bucket", metavar="BUCKET", help="backup.s3.bucket (default: kept)")
    p.add_argument(
        "--generate-secrets",
        action="store_true",
        help="generate astats:dbPassword and astats:secretKey without asking",
    )
    return p


def stack_file(stack: str, root: Path = ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def read_stack(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise NewStackError(f"{path.name} is not a YAML mapping")
    return loaded


def settings_of(config: dict[str, Any]) -> dict[str, Any]:
    """Every setting but the secrets (those are encrypted for their own stack)."""
    return {k: v for k, v in config.items() if not (isinstance(v, dict) and "secure" in v)}


def offsite_of(config: dict[str, Any]) -> dict[str, Any] | None:
    backup = config.get("astats:backup")
    s3 = backup.get("s3") if isinstance(backup, dict) else None
    return s3 if isinstance(s3, dict) else None


def _segments(prefix: str) -> list[str]:
    return [part for part in str(prefix or "").split("/") if part]


def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether pruning under one offsite location could touch the other's objects."""
    if a.get("bucket") != b.get("bucket") or a.get("endpointUrl") != b.get("endpointUrl"):
        return False
    first, second = _segments(a.get("prefix", "")), _segments(b.get("prefix", ""))
    shorter = min(len(first), len(second))
    return first[:shorter] == second[:shorter]


def other_offsite_locations(name: str, root: Path = ROOT) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(root.glob("Pulumi.*.yaml")):
        stack = path.name[len("Pulumi.") : -len(".yaml")]
        if stack == name:
            continue
        s3 = offsite_of(read_stack(path).get("config") or {})
        if s3 is not None:
            found[stack] = s3
    return found


def new_settings(args: argparse.Namespace, root: Path = ROOT) -> dict[str, Any]:
    """The new stack's settings: the source's, with an offsite location of its own."""
    source = stack_file(args.source, root)
    if not source.is_file():
        raise NewStackError(f"no stack file {source.name} to copy the settings from")
    config = settings_of(read_stack(source).get("config") or {})
    s3 = offsite_of(config)
    if args.no_offsite:
        if s3 is not None:
            del config["astats:backup"]["s3"]
        return config
    if s3 is None:
        if args.offsite_prefix is None:
            return config
        if not args.offsite_bucket:
            raise NewStackError(
                f"stack {args.source!r} has no backup.s3 to take a bucket from; "
                "add --offsite-bucket BUCKET"
            )
        s3 = config.setdefault("astats:backup", {}).setdefault("s3", {})
    if args.offsite_prefix is None:
        raise NewStackError(
            f"stack {args.source!r} copies its backups offsite to "
            f"s3://{s3.get('bucket')}/{s3.get('prefix', '')}; a new stack must not prune "
            "there: give it --offsite-prefix PREFIX (e.g. astats/"
            f"{args.name}) or --no-offsite"
        )
    s3["prefix"] = args.offsite_prefix
    if args.offsite_bucket:
        s3["bucket"] = args.offsite_bucket
    for stack, other in other_offsite_locations(args.name, root).items():
        if overlaps(s3, other):
            raise NewStackError(
                f"offsite location s3://{s3.get('bucket')}/{args.offsite_prefix} overlaps "
                f"stack {stack!r}'s s3://{other.get('bucket')}/{other.get('prefix', '')}; "
                "remote pruning of one would delete the other's backups: choose another prefix"
            )
    return config


def wrapper(*args: str, stdin: str | None = None) -> None:
    done = subprocess.run([str(WRAPPER), *args], cwd=ROOT, input=stdin, text=True, check=False)
    if done.returncode != 0:
        raise NewStackError(f"scripts/pulumi {' '.join(args)} failed (exit {done.returncode})")


def ask(key: str, generate: bool) -> str:
    if generate and key in GENERATED:
        return secrets.token_urlsafe(GENERATED[key])
    hint = " (empty: generate one)" if key in GENERATED else ""
    prompt = f"astats:{key}{hint}: "
    if sys.stdin.isatty():
        value = getpass.getpass(prompt)
    else:
        line = sys.stdin.readline()
        value = line.rstrip("\n")
    if value:
        return value
    if key in GENERATED:
        return secrets.token_urlsafe(GENERATED[key])
    raise NewStackError(f"astats:{key} is required and cannot be generated; give its value")


def header(args: argparse.Namespace) -> str:
    return (
        f"# The {args.name} stack, made by scripts/new-stack from {args.source}. Secrets are\n"
        f"# encrypted with {args.name}'s passphrase (scripts/pulumi config set --secret "
        f"--stack {args.name} ...).\n"
    )


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if not STACK_NAME.match(args.name):
            raise NewStackError(f"{args.name!r} is not a stack name (letters, digits, - _ .)")
        if args.name == "dev" or args.name.startswith("dev-"):
            raise NewStackError(
                f"{args.name!r} is a per-machine stack name (dev, dev-<name>): use scripts/up"
            )
        target = stack_file(args.name)
        if target.exists():
            raise NewStackError(f"{target.name} exists already; pick another name")
        settings = new_settings(args)
        keys = list(REQUIRED) + (list(OFFSITE) if offsite_of(settings) else [])

        wrapper("stack", "init", args.name, "--secrets-provider", "passphrase")
        written = read_stack(target) if target.exists() else {}
        if not written.get("encryptionsalt"):
            raise NewStackError(f"pulumi stack init wrote no encryptionsalt into {target.name}")
        written["config"] = settings | settings_of(written.get("config") or {})
        target.write_text(header(args) + yaml.safe_dump(written, sort_keys=False))
        print(f"scripts/new-stack: {target.name}: the settings of {args.source}", file=sys.stderr)

        for key in keys:
            value = ask(key, args.generate_secrets)
            secret = f"astats:{key}"
            wrapper("config", "set", "--stack", args.name, "--secret", secret, stdin=value + "\n")
        print(
            f"scripts/new-stack: review {target.name} (publicHost, images, ports), commit it, "
            f"keep the stack's passphrase safe, then: scripts/up {args.name}",
            file=sys.stderr,
        )
        try:
            wrapper("preview", "--diff", "--stack", args.name)
        except NewStackError as error:
            raise NewStackError(
                f"{error}; the stack and its secrets are set: fix what the preview says, then "
                f"scripts/pulumi preview --diff --stack {args.name}"
            ) from None
    except NewStackError as error:
        print(f"scripts/new-stack: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

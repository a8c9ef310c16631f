"""The real Pulumi CLI driving a throwaway copy of this project.

Each `Project` is a copy of the working tree (tracked and untracked files that git does not
ignore) in a temporary directory, sharing this checkout's ``venv``, with its own file state
backend, passphrase and stack, so nothing of an operator's stacks, state or config is touched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


# Commands that act on one stack get it named, never through the selected stack.
STACK_COMMANDS = frozenset({"up", "preview", "destroy", "config", "refresh"})
STACK_SUBCOMMANDS = frozenset({("stack", "output"), ("stack", "export")})


class PulumiError(AssertionError):
    """A pulumi command exited non-zero; the message carries its output."""


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def labelled(stack: str, listing: Sequence[str] = ("ps", "-aq")) -> list[str]:
    """Ids of what Docker holds of `stack`: `listing` is the docker command that lists them
    quietly (containers by default; ("volume", "ls", "-q") for volumes, ...)."""
    return subprocess.run(
        ["docker", *listing, "--filter", f"label=astats.stack={stack}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def running(stack: str, service: str) -> str:
    """The id of the one running container of `service` in `stack`."""
    ids = labelled(stack, ("ps", "-q", "--filter", f"label=astats.service={service}"))
    assert len(ids) == 1, f"{stack}: running {service} containers: {ids}"
    return ids[0]


def psql(stack: str, sql: str) -> str:
    """`sql` through psql in the stack's database container, as the app's role: its unaligned
    output; an error fails the test with psql's message."""
    argv = ["docker", "exec", "-u", "postgres", running(stack, "db"), "psql", "-X", "-At"]
    argv += ["-v", "ON_ERROR_STOP=1", "-h", "/var/run/postgresql", "-U", "astats", "-d", "astats"]
    done = subprocess.run([*argv, "-c", sql], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"psql {sql!r}: {done.stderr}"
    return done.stdout.strip()


def copy_tree(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        relative = raw.decode()
        source = REPO / relative
        if not source.is_file():
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (destination / "venv").symlink_to(REPO / "venv")


@dataclass
class Project:
    root: Path
    stack: str
    state_dir: Path
    passphrase: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def create(cls, scratch: Path, stack: str) -> Project:
        root = scratch / "project"
        state = scratch / "state"
        root.mkdir()
        state.mkdir()
        copy_tree(root)
        return cls(root=root, stack=stack, state_dir=state)

    @property
    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PULUMI_", "ASTATS_"))
        }
        env.update(
            PULUMI_BACKEND_URL=f"file://{self.state_dir}",
            PULUMI_CONFIG_PASSPHRASE=self.passphrase,
            PULUMI_SKIP_UPDATE_CHECK="true",
            PULUMI_DIY_BACKEND_NO_LEGACY_WARNING="true",
            PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK="true",
            NO_COLOR="1",
        )
        return env

    def run(
        self,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        timeout: float = 1200,
        extra_env: Mapping[str, str] | None = None,
    ) -> Result:
        scoped = args[0] in STACK_COMMANDS or tuple(args[:2]) in STACK_SUBCOMMANDS
        argv = ["pulumi", *args, *(["--stack", self.stack] if scoped else [])]
        argv += ["--non-interactive", "--color", "never"]
        env = self.env | dict(extra_env or {})
        completed = subprocess.run(
            argv,
            cwd=self.root,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(argv, completed.returncode, completed.stdout, completed.stderr)
        if check and completed.returncode != 0:
            raise PulumiError(f"{' '.join(argv)} exited {completed.returncode}:\n{result.output}")
        return result

    def init(self) -> None:
        self.run("stack", "init", self.stack, "--secrets-provider", "passphrase")

    def set_config(self, key: str, value: str, *, secret: bool = False, path: bool = False) -> None:
        flags = (["--secret"] if secret else []) + (["--path"] if path else [])
        # The value goes on stdin, as the README tells operators to give secrets.
        self.run("config", "set", *flags, key, stdin=value + "\n")

    def remove_config(self, key: str, *, path: bool = False) -> None:
        self.run("config", "rm", *(["--path"] if path else []), key)

    def up(self, *extra: str, check: bool = True, event_log: Path | None = None) -> Result:
        return self._with_events(
            "up", "--yes", "--skip-preview", *extra, check=check, log=event_log
        )

    def preview(self, *extra: str, check: bool = True, event_log: Path | None = None) -> Result:
        return self._with_events("preview", *extra, check=check, log=event_log)

    def _with_events(self, *args: str, check: bool, log: Path | None) -> Result:
        """Run `args`; with `log`, as the engine's JSON event stream, written to `log`."""
        if log is None:
            return self.run(*args, check=check)
        streaming = {"PULUMI_ENABLE_STREAMING_JSON_PREVIEW": "true"}
        result = self.run(*args, "--json", check=False, extra_env=streaming)
        log.write_text(result.stdout)
        if check and result.returncode != 0:
            raise PulumiError(
                f"{' '.join(result.argv)} exited {result.returncode}:\n{result.output}"
            )
        return result

    def destroy(self, *extra: str, check: bool = True) -> Result:
        return self.run("destroy", "--yes", "--skip-preview", *extra, check=check)

    def outputs(self) -> dict[str, Any]:
        return dict(json.loads(self.run("stack", "output", "--json", "--show-secrets").stdout))

    def resources(self) -> list[dict[str, Any]]:
        exported = json.loads(self.run("stack", "export").stdout)
        return list(exported["deployment"].get("resources") or [])

    def remove_stack(self) -> None:
        self.run("stack", "rm", "--yes", "--force", self.stack, check=False)


MAIN_OPS = ("create", "create-replacement", "update", "same", "read", "refresh")


@dataclass(frozen=True)
class Step:
    """What the engine did to one resource in a run: every op it reported (a replacement is
    `create-replacement`, `replace` and `delete-replaced`), and the sequence numbers at which
    the op that brings the new resource up started and finished (None: never finished)."""

    urn: str
    ops: frozenset[str]
    started: int
    finished: int | None

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def op(self) -> str:
        """One word for the whole step: replace, create, update, delete or same."""
        if "replace" in self.ops or "create-replacement" in self.ops:
            return "replace"
        for op in ("create", "update", "delete", "same"):
            if op in self.ops:
                return op
        return min(self.ops)


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def steps(events: Sequence[Mapping[str, Any]]) -> dict[str, Step]:
    """Each provider resource's step, keyed by `type::name` and, where that name is unique
    among them, by name."""
    ops: dict[str, set[str]] = {}
    started: dict[str, int] = {}
    finished: dict[str, int] = {}
    for event in events:
        sequence = int(event["sequence"])
        if "resourcePreEvent" in event:
            meta = event["resourcePreEvent"]["metadata"]
            if meta["type"].startswith(("astats:", "pulumi:")):
                continue  # components and the stack: their names repeat the services'
            ops.setdefault(meta["urn"], set()).add(meta["op"])
            if meta["op"] in MAIN_OPS or meta["urn"] not in started:
                started[meta["urn"]] = sequence
        elif "resOutputsEvent" in event:
            meta = event["resOutputsEvent"]["metadata"]
            if meta["op"] in MAIN_OPS:
                finished[meta["urn"]] = sequence
    result: dict[str, Step] = {}
    names: dict[str, int] = {}
    for urn in ops:
        step = Step(urn, frozenset(ops[urn]), started[urn], finished.get(urn))
        names[step.name] = names.get(step.name, 0) + 1
        result[urn.rsplit("$", 1)[-1]] = step
    for step in list(result.values()):
        if names[step.name] == 1:
            result[step.name] = step
    return result


def step_seconds(events: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Seconds from each provider resource step's start to its end, by `name:op` (the
    engine's event times are whole seconds): what a rollout spends where."""
    started: dict[tuple[str, str], int] = {}
    took: dict[str, int] = {}
    for event in events:
        for kind in ("resourcePreEvent", "resOutputsEvent"):
            if kind not in event:
                continue
            meta = event[kind]["metadata"]
            if meta["type"].startswith(("astats:", "pulumi:")):
                continue
            key = (meta["urn"], meta["op"])
            if kind == "resourcePreEvent":
                started[key] = int(event["timestamp"])
            elif key in started:
                name = meta["urn"].rsplit("::", 1)[-1]
                took[f"{name}:{meta['op']}"] = int(event["timestamp"]) - started[key]
    return took


def summary(events: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The engine's own count of resources per operation for the run."""
    for event in reversed(events):
        if "summaryEvent" in event:
            return {op: int(n) for op, n in event["summaryEvent"]["resourceChanges"].items()}
    raise AssertionError("the event log has no summary event")


def diagnostics(events: Sequence[Mapping[str, Any]]) -> str:
    return "".join(
        event["diagnosticEvent"].get("message", "")
        for event in events
        if "diagnosticEvent" in event
    )

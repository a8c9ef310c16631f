"""Run the real Pulumi program on Pulumi's mocks and record the whole resource graph.

Each evaluation runs in a fresh `contextvars.Context` with its own event loop, because
`set_mocks`, the config and the root stack resource are process-global context variables.
The recording monitor keeps what `MockResourceArgs` leaves out: dependencies, parents and
resource options, and the raw wire form of inputs, where secrets are still wrapped.
`in_fresh_loop` makes and resolves outputs outside any deployment, in the same isolation.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import json
import runpy
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks

ROOT = Path(__file__).resolve().parent.parent
SECRET_SIG = "4dabf18193072939515e22adb298388d"
COMMAND = "command:local:Command"
T = TypeVar("T")


@dataclass
class Registered:
    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    """Deserialized inputs (secrets unwrapped, as the mocks see them)."""
    wire: dict[str, Any]
    """Inputs as sent to the engine; secret values are still wrapped in their signature."""
    outputs: dict[str, Any]
    """State the (mock) provider returned."""
    dependencies: list[str]
    delete_before_replace: bool
    replace_on_changes: list[str]
    retain_on_delete: bool
    protect: bool
    custom: bool


@dataclass
class Graph:
    resources: list[Registered] = field(default_factory=list)
    stack_outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str, type_: str | None = None) -> Registered:
        found = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
        assert len(found) == 1, f"expected one resource named {name!r}, found {len(found)}"
        return found[0]

    def child_of(self, component: str, name: str, type_: str) -> Registered:
        """The resource `name` of `type_` whose parent is the component named `component`."""
        found = [
            r
            for r in self.resources
            if r.name == name and r.type == type_ and r.parent.endswith(f"::{component}")
        ]
        assert len(found) == 1, f"expected one {name!r} under {component!r}, found {len(found)}"
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)

    def ancestors(self, resource: Registered) -> Iterator[Registered]:
        """Everything `resource` waits for, directly or through others (and through parents)."""
        seen: set[str] = set()
        todo = list(resource.dependencies)
        while todo:
            urn = todo.pop()
            if urn in seen or not any(r.urn == urn for r in self.resources):
                continue
            seen.add(urn)
            dep = self.by_urn(urn)
            yield dep
            todo.extend(dep.dependencies)
            # Depending on a component means depending on every resource inside it.
            todo.extend(r.urn for r in self.resources if r.parent == urn)

    def waits_for(self, later: Registered, earlier: Registered) -> bool:
        return any(a.urn == earlier.urn for a in self.ancestors(later))

    def files_step(self, container: Registered) -> Registered:
        """The step that writes the files `container` reads at start (its secrets, a config)."""
        return self.child_of(
            container.parent.rsplit("::", 1)[1], f"{container.name}-write-files", COMMAND
        )

    def files(self, container: Registered) -> dict[str, str]:
        """What `container` reads at start, by file name: its files step's stdin, decoded."""
        stdin = self.files_step(container).inputs["stdin"]
        lines = (line.split(" ", 1) for line in stdin.splitlines())
        return {name: base64.b64decode(data).decode() for name, data in lines}

    def pids_limit(self, container: Registered) -> int:
        """The PIDs limit the step after `container` puts on it."""
        parent = container.parent.rsplit("::", 1)[1]
        step = self.child_of(parent, f"{container.name}-pids-limit", COMMAND)
        return int(step.inputs["environment"]["PIDS_LIMIT"])

    def containers(self) -> dict[str, Registered]:
        """Containers by their `astats.service` label."""
        result = {}
        for c in self.of_type("docker:index/container:Container"):
            labels = {item["label"]: item["value"] for item in c.inputs.get("labels", [])}
            result[labels["astats.service"]] = c
        return result


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            wire = json_format.MessageToDict(request.object)
            self.registered.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    inputs=_unwrap(wire),
                    wire=wire,
                    outputs=_unwrap(json_format.MessageToDict(response.object)),
                    dependencies=list(request.dependencies),
                    delete_before_replace=request.deleteBeforeReplace,
                    replace_on_changes=list(request.replaceOnChanges),
                    retain_on_delete=request.retainOnDelete,
                    protect=request.protect,
                    custom=request.custom,
                )
            )
        return response


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _fingerprint(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


class DockerMocks(pulumi.runtime.Mocks):
    """Deterministic stand-ins for what the providers compute on create."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        digest = _fingerprint(args.inputs)
        if args.typ == "docker:index/container:Container":
            state.setdefault("name", f"{args.name}-{digest[:7]}")
        elif args.typ == "docker:index/image:Image":
            state["repoDigest"] = f"sha256:{digest}"
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = f"sha256:{digest}"
        elif args.typ == COMMAND and args.name.endswith("-write-files"):
            state["stdout"] = f"revision-{digest[:12]}"
            state["stderr"] = ""
        elif args.typ == COMMAND:
            state["stdout"] = f"/backups/astats-{digest[:12]}.dump"
            state["stderr"] = ""
        return f"{args.name}-id", state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def dev_config() -> dict[str, Any]:
    """The committed Pulumi.dev.yaml, without its `astats:` prefix."""
    data = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    return {k.removeprefix("astats:"): v for k, v in data.items() if k.startswith("astats:")}


DEV_SECRETS = {"dbPassword": "dev-db-password", "secretKey": "dev-secret-key"}


def _as_config_value(value: Any) -> str:
    # Structured values reach the program JSON-encoded, scalars as strings: as from the CLI.
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evaluate(
    settings: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    *,
    stack: str = "dev",
    plaintext: Mapping[str, str] | None = None,
    preview: bool = False,
) -> Graph:
    """Run __main__.py on mocks with these settings and secrets; return what it registered.

    `plaintext` holds values set without --secret (to test that secrets must be encrypted).
    """
    settings = dev_config() if settings is None else settings
    secrets = DEV_SECRETS if secrets is None else secrets
    config = {f"astats:{k}": _as_config_value(v) for k, v in settings.items()}
    config |= {f"astats:{k}": v for k, v in secrets.items()}
    config |= {f"astats:{k}": v for k, v in (plaintext or {}).items()}
    secret_keys = [f"astats:{k}" for k in secrets]

    def run() -> Graph:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        monitor = RecordingMonitor(DockerMocks())
        pulumi.runtime.set_mocks(
            DockerMocks(), project="astats-infra", stack=stack, preview=preview, monitor=monitor
        )
        pulumi.runtime.set_all_config(config, secret_keys)
        graph = Graph(monitor.registered)

        @pulumi.runtime.test  # type: ignore[untyped-decorator]
        def program() -> None:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__pulumi_program__")

        try:
            program()
            # Exports sit on the root stack resource; under mocks nothing registers them.
            root = pulumi.runtime.settings.get_root_resource()
            exported = getattr(root, "outputs", {})
            resolved = loop.run_until_complete(pulumi.Output.from_input(exported).future())
            graph.stack_outputs = dict(resolved or {})
        finally:
            loop.close()
        return graph

    return contextvars.Context().run(run)


def register(make: Callable[[], object], *, stack: str) -> Graph:
    """Run `make` (which builds the program's components) on mocks; return what it registered.

    For tests that hand a real engine what one component of the program would register.
    """

    def run() -> Graph:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        monitor = RecordingMonitor(DockerMocks())
        pulumi.runtime.set_mocks(
            DockerMocks(), project="astats-infra", stack=stack, preview=False, monitor=monitor
        )

        @pulumi.runtime.test  # type: ignore[untyped-decorator]
        def program() -> None:
            make()

        try:
            program()
        finally:
            loop.close()
        return Graph(monitor.registered)

    return contextvars.Context().run(run)


def in_fresh_loop(make: Callable[[], Awaitable[T]]) -> T:
    """Run `make` where pulumi outputs resolve outside any deployment, as the engine would.

    Outputs are bound to the loop they were made on, so they are made inside; the loop and
    pulumi's settings are per context, kept away from other tests.
    """

    def run() -> T:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(make())
        finally:
            loop.close()

    return contextvars.Context().run(run)


async def value_of(output: pulumi.Input[str]) -> str:
    value = await pulumi.Output.from_input(output).future()
    assert isinstance(value, str)
    return value

"""``astats plan``: what `pulumi preview --json` says a rollout will do, in the operators' words.

Pure: the preview's JSON and the facts read beside it (the live schema's head, the new
migration files, the secret keys that changed) go in; a `Plan` comes out, rendered as text or
as Markdown for a pull request, with its exit code: 0 nothing to do, 2 changes, 3 danger (a
data volume replaced or deleted), 1 when the preview failed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NOTHING, FAILED, CHANGES, DANGER = 0, 1, 2, 3

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
IMAGE = "docker:index/image:Image"
COMMAND = "command:local:Command"
BACKUP_STEP, MIGRATION_STEP = "pre-migration-backup", "migration"
# What is lost with these is the operators' data: the database, its archive, the dumps, and
# the certificates (re-issuing counts against the CA's rate limits).
DATA_VOLUMES = frozenset({"pgdata", "pgbackrest", "backups", "certs"})
# Replaced behind the traffic switch: nginx moves to the new container once it is healthy.
SWITCHED = frozenset({"backend", "frontend"})
# Services nobody connects to: stopping one delays its work, it refuses nobody.
UNCONNECTED = frozenset({"scheduler", "acme"})
CHANGING_OPS = ("create", "update", "replace", "delete")


@dataclass(frozen=True)
class Revision:
    """One Alembic migration file: its revision, the ones it follows, its file name."""

    id: str
    down: tuple[str, ...]
    file: str


@dataclass(frozen=True)
class Schema:
    """Where the live database's schema stands against the backend's migration files."""

    live_heads: tuple[str, ...] | None
    """The revisions in alembic_version; () for a database with none; None: not read."""
    pending: tuple[Revision, ...] = ()
    """The files after the live head, in the order they run."""
    unplaced: tuple[Revision, ...] = ()
    """Files that cannot be placed against the live head (it was not read, or is unknown)."""
    why_unknown: str = ""
    """Why the live head could not be read or placed."""


@dataclass(frozen=True)
class Facts:
    schema: Schema
    secrets_changed: tuple[str, ...] | None
    """`astats:` secret keys set, changed or removed since the last update; None: unknown."""
    why_secrets_unknown: str = ""


@dataclass(frozen=True)
class Replacement:
    service: str
    switched: bool
    """True: create-before-delete behind the traffic switch; False: stopped first."""
    reasons: tuple[str, ...]
    gap_s: tuple[int, int] | None = None
    """Refused connections when stopped first: (likely, at most) seconds, from the healthcheck."""


@dataclass(frozen=True)
class VolumeChange:
    name: str
    docker_name: str
    op: str
    new_name: str = ""

    @property
    def data(self) -> bool:
        return self.name in DATA_VOLUMES


@dataclass(frozen=True)
class Plan:
    stack: str
    backup_runs: bool
    migration_runs: bool
    schema: Schema
    replaced: tuple[Replacement, ...]
    services: Mapping[str, tuple[str, ...]]
    """Containers created, updated or deleted, by op."""
    volumes: tuple[VolumeChange, ...]
    images: tuple[str, ...]
    """Images rebuilt."""
    secrets_changed: tuple[str, ...] | None
    why_secrets_unknown: str
    others: Mapping[str, tuple[str, ...]]
    """Every other changing step (pids limits, files, switches), by op."""
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    summary: Mapping[str, int] = field(default_factory=dict)

    @property
    def danger(self) -> tuple[VolumeChange, ...]:
        return tuple(v for v in self.volumes if v.data and v.op in ("replace", "delete"))

    @property
    def changes(self) -> bool:
        return any(n for op, n in self.summary.items() if op in CHANGING_OPS)

    @property
    def exit_code(self) -> int:
        if self.danger:
            return DANGER
        if self.errors:
            return FAILED
        return CHANGES if self.changes else NOTHING


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _state(step: Mapping[str, Any], which: str) -> Mapping[str, Any]:
    state = step.get(which)
    return state if isinstance(state, Mapping) else {}


def _type(step: Mapping[str, Any]) -> str:
    for which in ("newState", "oldState"):
        kind = _state(step, which).get("type")
        if isinstance(kind, str):
            return kind
    return str(step.get("urn", "")).rsplit("::", 2)[-2].rsplit("$", 1)[-1]


def _inputs(step: Mapping[str, Any], which: str = "newState") -> Mapping[str, Any]:
    inputs = _state(step, which).get("inputs")
    return inputs if isinstance(inputs, Mapping) else {}


def _properties(step: Mapping[str, Any]) -> tuple[str, ...]:
    """The top-level properties that changed: `envs[2]`, `labels[0].value` -> envs, labels."""
    listed = step.get("replaceReasons") or list(step.get("detailedDiff") or {})
    listed = listed or step.get("diffReasons") or []
    return tuple(sorted({re.split(r"[.\[]", str(p), maxsplit=1)[0] for p in listed}))


def duration_s(text: object) -> int:
    """Docker's duration text ("2s", "1m30s", "500ms") in whole seconds, rounded up."""
    total = 0.0
    for amount, unit in re.findall(r"([\d.]+)(ms|h|m|s)", str(text or "")):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return int(-(-total // 1))


def gap_estimate(healthcheck: object) -> tuple[int, int] | None:
    """Seconds a stopped-first service refuses connections: likely one check interval (Docker
    checks first an interval after the start; a quick service is healthy then), at most the
    healthcheck's budget (start period, then every retry failing)."""
    if not isinstance(healthcheck, Mapping) or not healthcheck.get("interval"):
        return None
    interval = duration_s(healthcheck.get("interval"))
    budget = duration_s(healthcheck.get("startPeriod")) + int(healthcheck.get("retries") or 1) * (
        interval + duration_s(healthcheck.get("timeout"))
    )
    return max(interval, 1), max(budget, interval, 1)


def _dependency_reasons(step: Mapping[str, Any], replaced: set[str]) -> tuple[str, ...]:
    """A replacement with no property of its own follows one it depends on."""
    depends = _state(step, "newState").get("dependencies") or []
    return tuple(
        sorted(f"{_name(str(urn))} is replaced" for urn in depends if str(urn) in replaced)
    )


def build_plan(stack: str, preview: Mapping[str, Any], facts: Facts) -> Plan:
    steps = [s for s in preview.get("steps") or [] if isinstance(s, Mapping)]
    replaced_urns = {str(s.get("urn")) for s in steps if s.get("op") == "replace"}
    ops: dict[str, str] = {}
    replaced: list[Replacement] = []
    services: dict[str, list[str]] = {}
    volumes: list[VolumeChange] = []
    images: list[str] = []
    others: dict[str, list[str]] = {}
    for step in steps:
        op, kind, name = str(step.get("op")), _type(step), _name(str(step.get("urn", "")))
        if op not in CHANGING_OPS or kind.startswith(("pulumi:", "astats:")):
            continue
        ops[name] = op
        if kind == CONTAINER and op == "replace":
            reasons = _properties(step) or _dependency_reasons(step, replaced_urns)
            # The engine marks the old container of a delete-before-replace as pending
            # replacement in the preview; create-before-delete leaves it as it is.
            stopped_first = bool(_state(step, "oldState").get("pendingReplacement"))
            switched = not stopped_first and name in SWITCHED
            gap = None if switched else gap_estimate(_inputs(step).get("healthcheck"))
            replaced.append(Replacement(name, switched, reasons, gap))
        elif kind == CONTAINER:
            services.setdefault(op, []).append(name)
        elif kind == VOLUME:
            old = str(_inputs(step, "oldState").get("name") or "")
            new = str(_inputs(step).get("name") or "")
            volumes.append(VolumeChange(name, old or new, op, new if new != old else ""))
        elif kind == IMAGE and op in ("update", "replace", "create"):
            images.append(name)
        elif name not in (BACKUP_STEP, MIGRATION_STEP):
            others.setdefault(op, []).append(name)
    diagnostics = [d for d in preview.get("diagnostics") or [] if isinstance(d, Mapping)]
    return Plan(
        stack=stack,
        backup_runs=ops.get(BACKUP_STEP) in ("create", "replace"),
        migration_runs=ops.get(MIGRATION_STEP) in ("create", "replace"),
        schema=facts.schema,
        replaced=tuple(sorted(replaced, key=lambda r: (r.switched, r.service))),
        services={op: tuple(sorted(names)) for op, names in services.items()},
        volumes=tuple(sorted(volumes, key=lambda v: (not v.data, v.name))),
        images=tuple(sorted(images)),
        secrets_changed=facts.secrets_changed,
        why_secrets_unknown=facts.why_secrets_unknown,
        others={op: tuple(sorted(names)) for op, names in others.items()},
        errors=_said(diagnostics, "error"),
        warnings=_said(diagnostics, "warning"),
        summary={str(k): int(v) for k, v in (preview.get("changeSummary") or {}).items()},
    )


def _said(diagnostics: Sequence[Mapping[str, Any]], severity: str) -> tuple[str, ...]:
    return tuple(
        " ".join(str(d.get("message", "")).split())
        for d in diagnostics
        if d.get("severity") == severity and str(d.get("message", "")).strip()
    )


@dataclass(frozen=True)
class Line:
    """One statement of the plan; `level` says how loudly: danger, change or note."""

    text: str
    level: str = "change"
    detail: tuple[str, ...] = ()


def _revisions(revisions: Sequence[Revision]) -> str:
    return ", ".join(f"{r.id} ({r.file})" for r in revisions)


def _schema_lines(plan: Plan) -> list[Line]:
    schema = plan.schema
    if not plan.migration_runs:
        if schema.pending:
            return [
                Line(
                    f"no migration runs, yet {len(schema.pending)} migration file(s) come after "
                    f"the live head: {_revisions(schema.pending)}",
                    "note",
                )
            ]
        return [Line("no backup or migration runs", "note")]
    backup = "a verified backup, then " if plan.backup_runs else ""
    lines = [Line(f"{backup}the migration (alembic upgrade head) runs before the new backend")]
    heads = ", ".join(schema.live_heads or ()) or "none (an empty schema)"
    if schema.pending:
        lines.append(
            Line(
                f"new migrations after the live head {heads}: {len(schema.pending)}",
                detail=tuple(f"{r.id} ({r.file})" for r in schema.pending),
            )
        )
    elif schema.live_heads is not None and not schema.unplaced:
        lines.append(Line(f"no migration file comes after the live head {heads}", "note"))
    if schema.unplaced:
        lines.append(
            Line(
                f"{schema.why_unknown}; these migration files cannot be placed against it: "
                f"{len(schema.unplaced)}",
                "note",
                tuple(f"{r.id} ({r.file})" for r in schema.unplaced),
            )
        )
    return lines


def _replacement_line(r: Replacement) -> Line:
    why = (
        f" ({', '.join(r.reasons)} changed)"
        if r.reasons and "is replaced" not in (r.reasons[0])
        else (f" ({', '.join(r.reasons)})" if r.reasons else "")
    )
    if r.switched:
        return Line(
            f"{r.service} is replaced create-before-delete: the new container takes traffic "
            f"once healthy, no request is dropped{why}"
        )
    if r.gap_s is None:
        gap = "a short gap (no healthcheck to estimate it from)"
    else:
        likely, most = r.gap_s
        what = "down" if r.service in UNCONNECTED else "refused connections"
        gap = (
            f"{what} for about {likely} s, at most {most} s (an estimate from its "
            "healthcheck's interval and budget)"
        )
    return Line(f"{r.service} is replaced delete-before-replace: {gap}{why}")


def _volume_line(v: VolumeChange) -> Line:
    moved = f" -> {v.new_name}" if v.new_name else ""
    if v.data and v.op == "replace":
        return Line(
            f"DANGER: data volume {v.name} ({v.docker_name}{moved}) is replaced: the service "
            "starts on a new, empty volume; data at risk (the old one is kept on the host, but "
            "the stack leaves it)",
            "danger",
        )
    if v.data and v.op == "delete":
        return Line(
            f"DANGER: data volume {v.name} ({v.docker_name}) is deleted from the stack: data at "
            "risk",
            "danger",
        )
    return Line(f"volume {v.name} ({v.docker_name}{moved}): {v.op}")


def plan_lines(plan: Plan) -> tuple[str, list[Line]]:
    """The headline and the plan's statements, most dangerous first."""
    lines: list[Line] = [_volume_line(v) for v in plan.volumes]
    lines += [Line(f"preview error: {e}", "danger") for e in plan.errors]
    lines += _schema_lines(plan) if plan.changes else []
    lines += [_replacement_line(r) for r in plan.replaced]
    words = {"create": "started", "update": "updated in place", "delete": "removed"}
    for op in ("create", "update", "delete"):
        if plan.services.get(op):
            lines.append(Line(f"{', '.join(plan.services[op])}: {words[op]}"))
    if plan.images:
        lines.append(Line(f"rebuilt: {', '.join(plan.images)}"))
    if plan.secrets_changed:
        lines.append(
            Line(
                "secrets changed since the last update (keys only): "
                + ", ".join(plan.secrets_changed)
            )
        )
    elif plan.secrets_changed is None:
        lines.append(
            Line(f"secrets: cannot say which changed ({plan.why_secrets_unknown})", "note")
        )
    if plan.others:
        follow = "; ".join(f"{op} {', '.join(names)}" for op, names in sorted(plan.others.items()))
        lines.append(Line(f"steps that follow from these: {follow}", "note"))
    lines += [Line(f"warning: {w}", "note") for w in plan.warnings]
    counts = ", ".join(
        f"{n} to {op}" for op, n in sorted(plan.summary.items()) if op in CHANGING_OPS and n
    )
    if plan.exit_code == DANGER:
        headline = f"DANGER, data at risk: {counts}"
    elif plan.exit_code == FAILED:
        headline = "the preview failed; what it planned before the error is below"
    elif plan.exit_code == CHANGES:
        headline = f"changes: {counts}"
    else:
        headline = "nothing to do: the stack is as the program and its config say"
    return f"astats plan for stack {plan.stack}: {headline}", lines


def render_text(plan: Plan) -> str:
    headline, lines = plan_lines(plan)
    out = [headline]
    for line in lines:
        out.append(f"  {line.text}")
        out += [f"      {d}" for d in line.detail]
    return "\n".join(out) + "\n"


MARKDOWN_MARK = {"danger": ":rotating_light: **", "change": "", "note": "_"}
MARKDOWN_END = {"danger": "**", "change": "", "note": "_"}


def render_markdown(plan: Plan) -> str:
    headline, lines = plan_lines(plan)
    title = headline.replace("astats plan for stack ", "", 1)
    out = [f"### `astats plan` — {title.replace(plan.stack, f'`{plan.stack}`', 1)}", ""]
    for line in lines:
        text = line.text.replace("DANGER: ", "", 1)
        out.append(f"- {MARKDOWN_MARK[line.level]}{text}{MARKDOWN_END[line.level]}")
        out += [f"  - `{d}`" for d in line.detail]
    return "\n".join(out) + "\n"

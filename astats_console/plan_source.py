"""What `astats plan` reads: the real preview, the live schema's head, the backend's migration
files and which secrets changed since the last update.

The preview is `scripts/pulumi preview --json` from the project directory (the CLI on PATH
when there is no wrapper), as the restore's switch runs `pulumi up`. Which secrets changed is
the stack's secret config now against the config the last successful update ran with (`pulumi
stack history`): the one source the file backend keeps per update. The preview cannot say it:
a secret reaches a service as a file, and its files step only shows that its (secret) input
changed, not which key. The values are compared in memory, as digests, and never printed.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from astats_console.errors import ConsoleError
from astats_console.migrations import live_heads
from astats_console.plan import Facts, Revision, Schema, build_plan, render_markdown, render_text
from astats_console.pulumi_cli import project_dir, run_pulumi, said
from astats_console.stack import Stack

NAMESPACE = "astats:"
PREVIEW_TIMEOUT_S = 1200
QUICK_TIMEOUT_S = 120
HISTORY_PAGE = 20


def preview_json(project: Path, stack: str) -> dict[str, Any]:
    """The engine's preview as JSON; a preview that fails with its diagnostics is returned too
    (the plan shows them), one that printed nothing readable is an error."""
    result = run_pulumi(project, ["preview", "--json"], stack, PREVIEW_TIMEOUT_S)
    try:
        preview = json.loads(result.stdout)
    except ValueError:
        preview = None
    if not isinstance(preview, dict) or (result.returncode != 0 and not preview.get("diagnostics")):
        raise ConsoleError(f"pulumi preview failed: {said(result)}")
    return preview


def _digests(config: Mapping[str, Any]) -> dict[str, str]:
    """Each `astats:` secret's digest, so no value outlives the comparison."""
    return {
        key: hashlib.sha256(str(item.get("value", "")).encode()).hexdigest()
        for key, item in config.items()
        if key.startswith(NAMESPACE) and isinstance(item, Mapping) and item.get("secret")
    }


def changed_secrets(now: Mapping[str, Any], deployed: Mapping[str, Any]) -> tuple[str, ...]:
    """The `astats:` secret keys that differ between two `--json --show-secrets` configs."""
    a, b = _digests(now), _digests(deployed)
    return tuple(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))


def last_deployed_config(history: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The config of the newest successful update (history is newest first)."""
    for entry in history:
        if entry.get("kind") == "update" and entry.get("result") == "succeeded":
            config = entry.get("config")
            return config if isinstance(config, Mapping) else {}
    return None


def secrets_facts(project: Path, stack: str) -> tuple[tuple[str, ...] | None, str]:
    now = run_pulumi(project, ["config", "--json", "--show-secrets"], stack, QUICK_TIMEOUT_S)
    history = run_pulumi(
        project,
        ["stack", "history", "--json", "--show-secrets", "--page-size", str(HISTORY_PAGE)],
        stack,
        QUICK_TIMEOUT_S,
    )
    for result, what in ((now, "the stack's config"), (history, "the stack's history")):
        if result.returncode != 0:
            return None, f"{what} could not be read: {said(result)}"
    try:
        config, entries = json.loads(now.stdout), json.loads(history.stdout or "[]")
    except ValueError:
        return None, "pulumi printed no JSON for the config or the history"
    deployed = last_deployed_config(entries if isinstance(entries, list) else [])
    if deployed is None:
        return None, "no successful update in the stack's history to compare with"
    return changed_secrets(config, deployed), ""


def versions_dir(project: Path, backend_config: Mapping[str, Any]) -> Path | None:
    """The backend's Alembic versions directory: alembic.ini's script_location in the build
    context (config backend.build.context), else <context>/migrations/versions."""
    build = backend_config.get("build")
    context = build.get("context") if isinstance(build, Mapping) else None
    if not isinstance(context, str):
        return None
    root = project / context
    ini = configparser.ConfigParser()
    try:
        ini.read(root / "alembic.ini")
        location = ini.get("alembic", "script_location", raw=True)
    except (configparser.Error, OSError):
        location = "%(here)s/migrations"
    scripts = Path(location.replace("%(here)s", str(root)))
    return (scripts if scripts.is_absolute() else root / scripts) / "versions"


def _literal(node: ast.expr) -> tuple[str, ...]:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def read_revision(path: Path) -> Revision | None:
    """`revision` and `down_revision` as the file assigns them (plain or annotated)."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    found: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            found[target.id] = _literal(value)
    if not found.get("revision"):
        return None
    return Revision(found["revision"][0], found.get("down_revision", ()), path.name)


def read_revisions(directory: Path) -> list[Revision]:
    return [r for r in (read_revision(p) for p in sorted(directory.glob("*.py"))) if r is not None]


def in_order(revisions: Sequence[Revision]) -> list[Revision]:
    """Parents before children, ties by revision: the order `alembic upgrade head` runs them."""
    by_id = {r.id: r for r in revisions}
    done: set[str] = set()
    ordered: list[Revision] = []
    while len(ordered) < len(by_id):
        ready = sorted(
            rid
            for rid, r in by_id.items()
            if rid not in done and all(d in done or d not in by_id for d in r.down)
        )
        if not ready:  # a cycle: what is left, as found
            ready = sorted(set(by_id) - done)
        for rid in ready:
            done.add(rid)
            ordered.append(by_id[rid])
    return ordered


def place(revisions: Sequence[Revision], heads: tuple[str, ...] | None, why: str = "") -> Schema:
    """The files after the live `heads` (None: unread, every file unplaced)."""
    ordered = in_order(revisions)
    if heads is None:
        return Schema(None, unplaced=tuple(ordered), why_unknown=why)
    by_id = {r.id: r for r in ordered}
    unknown = [h for h in heads if h not in by_id]
    if unknown:
        return Schema(
            heads,
            unplaced=tuple(ordered),
            why_unknown=f"the live head {', '.join(unknown)} is not among the migration files",
        )
    applied: set[str] = set()
    stack = list(heads)
    while stack:
        rid = stack.pop()
        if rid in applied or rid not in by_id:
            continue
        applied.add(rid)
        stack.extend(by_id[rid].down)
    return Schema(heads, pending=tuple(r for r in ordered if r.id not in applied))


def backend_config(preview: Mapping[str, Any]) -> Mapping[str, Any]:
    """`astats:backend` as the preview ran with it (its config block, values as JSON text)."""
    raw = (preview.get("config") or {}).get(f"{NAMESPACE}backend")
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return value if isinstance(value, Mapping) else {}


def gather(stack: Stack) -> tuple[dict[str, Any], Facts]:
    """The preview and the facts beside it; the secrets are read while the preview runs."""
    project = project_dir_for_plan()
    with ThreadPoolExecutor(max_workers=2) as pool:
        secrets = pool.submit(secrets_facts, project, stack.name)
        preview = preview_json(project, stack.name)
        changed, why_secrets = secrets.result()
    directory = versions_dir(project, backend_config(preview))
    revisions = read_revisions(directory) if directory and directory.is_dir() else []
    heads, why = live_heads(stack)
    facts = Facts(place(revisions, heads, why), changed, why_secrets)
    return preview, facts


def project_dir_for_plan() -> Path:
    try:
        return project_dir()
    except ConsoleError:
        raise ConsoleError(
            "plan runs pulumi preview: run astats from the project directory (where Pulumi.yaml is)"
        ) from None


def run_plan(stack: Stack, out: Console, *, markdown: bool = False) -> int:
    """Print the plan of `stack` (text, or Markdown for a pull request); its exit code."""
    preview, facts = gather(stack)
    plan = build_plan(stack.name, preview, facts)
    render = render_markdown if markdown else render_text
    out.print(render(plan).rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
    return plan.exit_code

"""CI's machine has no Pulumi CLI: no test outside tests/e2e may run `pulumi`.

Two checks keep it so. While these suites run, tests/conftest.py hides any `pulumi` on PATH,
so a test that would call it meets what CI meets. And every test module outside tests/e2e is
read for the ways a test starts the CLI: `which("pulumi")`, an argv that begins with `pulumi`,
a shell line that does, or the Automation API (which drives the CLI).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# The guard that hides the CLI looks for it, and this check names what it looks for.
GUARDS = {TESTS / "conftest.py", Path(__file__).resolve()}


def _is_pulumi(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == "pulumi"


def _runs_pulumi(node: ast.AST) -> bool:
    """Whether this node starts the CLI (or the Automation API, which drives it)."""
    if isinstance(node, ast.Call) and node.args:
        first = node.args[0]
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        shell_line = isinstance(first, ast.Constant) and str(first.value).startswith("pulumi ")
        return (name == "which" and _is_pulumi(first)) or shell_line
    if isinstance(node, ast.List | ast.Tuple):
        return bool(node.elts) and _is_pulumi(node.elts[0])
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        names = {alias.name for alias in node.names}
        return module.startswith("pulumi.automation") or (
            module == "pulumi" and "automation" in names
        )
    if isinstance(node, ast.Import):
        return any(alias.name.startswith("pulumi.automation") for alias in node.names)
    return False


def pulumi_calls(source: str) -> list[int]:
    """The lines of `source` that would run the Pulumi CLI."""
    nodes = ast.walk(ast.parse(source))
    return sorted({getattr(node, "lineno", 0) for node in nodes if _runs_pulumi(node)})


def test_no_test_outside_e2e_runs_the_pulumi_cli() -> None:
    offenders = []
    for module in sorted(TESTS.rglob("*.py")):
        relative = module.relative_to(TESTS)
        if relative.parts[0] == "e2e" or module in GUARDS:
            continue
        offenders += [f"tests/{relative}:{line}" for line in pulumi_calls(module.read_text())]
    assert offenders == [], f"these run the Pulumi CLI; move them to tests/e2e: {offenders}"


def test_the_check_finds_each_way_of_running_the_cli() -> None:
    source = """
import shutil, subprocess
from pulumi import automation
import pulumi.automation as auto
shutil.which("pulumi")
subprocess.run(["pulumi", "stack", "ls"])
subprocess.run("pulumi preview --diff", shell=True)
programs = {"pulumi": "#!/bin/sh"}
"""
    assert pulumi_calls(source) == [3, 4, 5, 6, 7]


def test_these_suites_run_without_a_pulumi_cli_on_path() -> None:
    assert shutil.which("pulumi") is None, "tests/conftest.py hides pulumi outside tests/e2e"

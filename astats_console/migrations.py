"""Which Alembic migrations a rollback undoes, and whether each one can be undone.

The scripts come from the **running** backend's image (the newer one, which has them): a small
program run in it with `docker exec` asks Alembic's own script directory for the revisions
between the two heads and prints their sources. Whether a downgrade is real is read from the
source with `ast`: none, an empty one (`pass`, `...`, a docstring) or one that raises
`NotImplementedError` cannot undo its upgrade.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass

from docker.errors import DockerException
from docker.models.containers import Container

from astats_console.errors import ConsoleError, one_line
from astats_console.exec import DB_SERVICE, PSQL_SCRIPT
from astats_console.stack import Stack

TABLE_QUERY = "SELECT to_regclass('alembic_version') IS NOT NULL"
HEAD_QUERY = "SELECT version_num FROM alembic_version ORDER BY 1"
LISTER = r"""
import json, sys
from alembic.config import Config
from alembic.script import ScriptDirectory
scripts = ScriptDirectory.from_config(Config("alembic.ini"))
upper, lower = sys.argv[1], sys.argv[2]
found = []
for script in scripts.iterate_revisions(upper, None if lower == "base" else lower):
    with open(script.path, encoding="utf-8") as source:
        found.append({"revision": script.revision, "path": script.path, "source": source.read()})
print(json.dumps(found))
"""


@dataclass(frozen=True)
class Migration:
    revision: str
    path: str
    source: str

    @property
    def file(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def irreversible(self) -> str | None:
        """Why its downgrade cannot undo it, or None when it has a real one."""
        return downgrade_problem(self.source)


def _is_docstring_or_ellipsis(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _raises_not_implemented(node: ast.AST) -> bool:
    if not isinstance(node, ast.Raise) or node.exc is None:
        return False
    raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"


def downgrade_problem(source: str) -> str | None:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"its source does not parse ({exc.msg})"
    functions = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "downgrade"
    ]
    if not functions:
        return "it has no downgrade()"
    body = [s for s in functions[-1].body if not _is_docstring_or_ellipsis(s)]
    if not body or all(isinstance(s, ast.Pass) for s in body):
        return "its downgrade() does nothing"
    if any(_raises_not_implemented(node) for node in ast.walk(functions[-1])):
        return "its downgrade() raises NotImplementedError"
    return None


def parse_listing(text: str) -> list[Migration]:
    try:
        items = json.loads(text.strip().splitlines()[-1])
        return [Migration(str(i["revision"]), str(i["path"]), str(i["source"])) for i in items]
    except (ValueError, LookupError, TypeError, IndexError) as exc:
        raise ConsoleError(f"the backend's migration listing is unreadable: {exc}") from None


def between(backend: Container, live_head: str, target_head: str | None) -> list[Migration]:
    """The revisions a downgrade from `live_head` to `target_head` undoes, newest first."""
    code, output = backend.exec_run(
        ["python", "-c", LISTER, live_head, target_head or "base"], demux=True
    )
    out, err = output if isinstance(output, tuple) else (output, b"")
    if code != 0:
        said = one_line((err or out or b"").decode(errors="replace"))
        raise ConsoleError(f"the running backend could not list its migrations: {said}")
    return parse_listing((out or b"").decode(errors="replace"))


def live_heads(stack: Stack) -> tuple[tuple[str, ...] | None, str]:
    """alembic_version in the running database, through psql in its container (as astats
    psql): () for a database without the table; None with the reason when it cannot be read."""
    try:
        container = stack.running(DB_SERVICE, role="the database")
        if _psql(container, TABLE_QUERY) != ["t"]:
            return (), ""
        return tuple(_psql(container, HEAD_QUERY)), ""
    except (ConsoleError, DockerException) as exc:
        return None, f"the live database cannot be read ({one_line(str(exc))})"


def _psql(container: Container, query: str) -> list[str]:
    result = container.exec_run(["sh", "-c", PSQL_SCRIPT, "psql", "-AtX", "-c", query])
    said: str = result.output.decode(errors="replace")
    if result.exit_code != 0:
        raise ConsoleError(one_line(said) or f"psql exited {result.exit_code}")
    return said.split()

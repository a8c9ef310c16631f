"""Comparing what the program produces with a reviewed golden file.

``ASTATS_WRITE_GOLDEN=1`` rewrites the file with what was produced, for a change that is meant;
the diff then goes to review like any other.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path


def assert_matches_golden(path: Path, actual: str, produced_by: str) -> None:
    """``actual`` equals the golden file at ``path``; on a difference, the unified diff."""
    if os.environ.get("ASTATS_WRITE_GOLDEN") == "1":
        path.write_text(actual)
    expected = path.read_text()
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            f"golden/{path.name}",
            produced_by,
        )
    )
    assert actual == expected, diff

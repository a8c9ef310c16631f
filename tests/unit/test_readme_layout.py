"""The layout in docs/development.md names every file and directory the repository tracks, and
nothing else."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "docs" / "development.md"


def layout_entries() -> list[str]:
    text = LAYOUT.read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 1)[1].split("```", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def tracked_files() -> list[str]:
    result = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"not a git checkout: {result.stderr.strip()}")
    return [
        path
        for path in result.stdout.splitlines()
        if Path(path).name != "__init__.py" and not ("/" not in path and path.startswith("."))
    ]


def covers(entry: str, path: str) -> bool:
    return path == entry or (entry.endswith("/") and path.startswith(entry))


def test_every_tracked_file_has_its_line_in_the_layout() -> None:
    entries = layout_entries()
    missing = [path for path in tracked_files() if not any(covers(e, path) for e in entries)]
    assert missing == [], "add a line to docs/development.md's Layout for each"


def test_every_layout_line_names_something_tracked() -> None:
    tracked = tracked_files()
    stale = [e for e in layout_entries() if not any(covers(e, path) for path in tracked)]
    assert stale == [], "remove or correct these lines in docs/development.md's Layout"


def test_each_thing_has_one_line() -> None:
    entries = layout_entries()
    assert len(entries) == len(set(entries))

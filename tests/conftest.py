"""Every suite but the end-to-end one runs as CI runs it: without a Pulumi CLI.

The end-to-end suite needs a real Pulumi engine and runs only through `scripts/e2e`. Everywhere
else a `pulumi` found on PATH is hidden for the session, so a test that would need it fails or
skips here exactly as it would on CI's machine, which has none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

E2E = os.environ.get("ASTATS_E2E") == "1"

collect_ignore = [] if E2E else ["e2e"]


def _without_pulumi(path: str) -> str:
    """PATH with each directory that holds `pulumi*` programs replaced by a copy of its links
    to everything else, so `docker`, `node` and the rest beside it stay reachable."""
    entries = []
    for entry in path.split(os.pathsep):
        directory = Path(entry)
        if not (directory / "pulumi").exists():
            entries.append(entry)
            continue
        mirror = Path(tempfile.mkdtemp(prefix="astats-path-"))
        for program in directory.iterdir():
            if not program.name.startswith("pulumi"):
                (mirror / program.name).symlink_to(program)
        entries.append(str(mirror))
    return os.pathsep.join(entries)


if not E2E and shutil.which("pulumi") is not None:
    os.environ["PATH"] = _without_pulumi(os.environ.get("PATH", ""))

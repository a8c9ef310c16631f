"""What the end-to-end suite needs before it starts, each missing piece named in one line
with the way an operator installs it.

    ./venv/bin/python -m tests.e2e.preflight     # exit 1 with that line when something is missing
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL_CLI = "install the Pulumi CLI (https://www.pulumi.com/docs/install/) and put it on PATH"


def pinned_versions(requirements: Path = REPO / "requirements.txt") -> dict[str, str]:
    """The plugin version each pinned SDK asks for: `pulumi-docker==5.1.0` -> docker 5.1.0."""
    pins = dict(re.findall(r"^pulumi-(\w+)==(\S+)$", requirements.read_text(), re.M))
    cli = re.search(r"^pulumi==(\S+)$", requirements.read_text(), re.M)
    if cli is None or {"docker", "command"} - set(pins):
        raise SystemExit(f"{requirements} must pin pulumi, pulumi-docker and pulumi-command")
    return {"cli": cli.group(1), **pins}


def problem() -> str | None:
    """The first missing piece, as one line, or None when everything is there."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        return f"the Pulumi CLI is not on PATH; {INSTALL_CLI}"
    if shutil.which("pulumi-language-python") is None and not (
        Path(pulumi).resolve().with_name("pulumi-language-python").exists()
    ):
        return f"pulumi-language-python is missing beside {pulumi}; reinstall the Pulumi CLI"
    versions = pinned_versions()
    listed = subprocess.run(
        ["pulumi", "plugin", "ls", "--json"], capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        return f"`pulumi plugin ls` failed: {listed.stderr.strip().splitlines()[-1:]}"
    have = {
        (plugin["name"], plugin["version"])
        for plugin in json.loads(listed.stdout or "[]")
        if plugin.get("kind") == "resource"
    }
    for name in ("docker", "command"):
        if (name, versions[name]) not in have:
            return (
                f"the Pulumi {name} provider plugin {versions[name]} is not installed; "
                f"install it: pulumi plugin install resource {name} {versions[name]}"
            )
    if shutil.which("docker") is None:
        return "the docker CLI is not on PATH; install Docker (Debian: apt-get install docker.io)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return "no Docker engine answers (is dockerd running? is DOCKER_HOST right?)"
    return None


if __name__ == "__main__":
    missing = problem()
    if missing:
        print(f"scripts/e2e: {missing}", file=sys.stderr)
        sys.exit(1)

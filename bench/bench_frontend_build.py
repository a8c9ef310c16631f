"""Benchmark: the demo frontend's image rebuilt after a one-line page change, against cold.

The cold build is of the same sources, in the same run.

Each round copies examples/demo-app/frontend to a temporary directory (the repo is never
edited) and builds its Dockerfile with BuildKit, the ``FROM`` lines naming the local stand-in
for ``node:20-slim`` (tests/e2e/images.py), three times:

* cold: ``--no-cache`` and empty cache mounts, so ``npm ci`` downloads every package and
  ``next build`` compiles everything;
* warm: after a one-line change to the page's ``<h1>``; the layer cache skips ``npm ci`` and the
  ``.next/cache`` mount keeps Next's compiler cache from the cold build;
* warm without ``.next/cache``: after another one-line change, with that mount empty again:
  what the mount itself is worth.

Empty cache mounts without touching anyone else's build cache: the bench's copy of the
Dockerfile gives each cache mount an ``id=`` of its own, new in every round, which only changes
which directory BuildKit mounts, not what the build does. At the end the bench removes its
image and the records of the cache mounts on the Dockerfile's targets that appeared during the
run (BuildKit's records do not carry the id, so a first build of the same Dockerfile elsewhere
on the machine during the run loses its new, unused cache mounts too; one in use is kept). The
layers it built are left as ordinary unused build cache (``docker builder prune`` reclaims
them).

Target: cold / warm >= 5, as the median of per-round ratios. Not a test: the figures depend on
the machine, on what else runs on it (the warm build is all CPU, the cold one half download)
and on the network (the cold ``npm ci`` downloads from the npm registry).

    ./venv/bin/python bench/bench_frontend_build.py [--rounds 3] [--logs DIR]
        [--frontend DIR --frontend OTHER_DIR]

With ``--frontend`` given twice (say, a checkout of the frontend before a change, then the
working tree's), the rounds alternate which of them builds first, so both meet the same noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.docker.images import BASE_TAG, SUITE  # noqa: E402
from tests.e2e.images import (  # noqa: E402
    NODE_TAG,
    OFFICIAL_NODE,
    node_standin,
    stand_in_dockerfile,
)
from tests.support.debian_images import debian_base, image_exists  # noqa: E402

FRONTEND_DIR = REPO_ROOT / "examples" / "demo-app" / "frontend"
PAGE = Path("app") / "page.js"
IMAGE_TAG = "astats-bench/frontend:latest"
TARGET = 5.0
NEXT_CACHE = ".next/cache"
CACHE_MOUNT = re.compile(r"--mount=type=cache,(?P<options>\S+)")
HEADING = re.compile(r"<h1>(?P<text>[^<]*)</h1>")
STEP_LINE = re.compile(r"^#(?P<vertex>\d+) \[(?P<stage>[^\]]+)\] (?P<instruction>(?:RUN|COPY) .+)$")
BENCH_ID = re.compile(r",id=astats-bench-[^,\s]+")
STEP_END = re.compile(r"^#(?P<vertex>\d+) (?:DONE (?P<seconds>[\d.]+)s|(?P<cached>CACHED))$")


@dataclass(frozen=True)
class Build:
    seconds: float
    steps: dict[str, str]


@dataclass(frozen=True)
class Docker:
    """A docker client that builds with BuildKit, and how it does."""

    client: str
    build_command: tuple[str, ...]
    env: dict[str, str]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self.client, *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check)


def buildkit_docker() -> Docker:
    """The first docker client on PATH that builds with BuildKit.

    A client with buildx builds with ``docker buildx build --load``; a client older than 23
    without buildx has BuildKit built in, behind ``DOCKER_BUILDKIT=1``. Newer clients without
    buildx fall back to the legacy builder, which rejects ``RUN --mount``.
    """
    seen: set[Path] = set()
    for directory in os.get_exec_path():
        client = Path(directory, "docker")
        if not os.access(client, os.X_OK) or client.resolve() in seen:
            continue
        seen.add(client.resolve())
        docker = Docker(str(client), (), dict(os.environ))
        if docker("buildx", "version", check=False).returncode == 0:
            return Docker(str(client), ("buildx", "build", "--load"), docker.env)
        version = docker("version", "--format", "{{.Client.Version}}", check=False).stdout
        if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return Docker(str(client), ("build",), {**docker.env, "DOCKER_BUILDKIT": "1"})
    raise SystemExit("no docker client on PATH builds with BuildKit (install docker-buildx)")


def mount_target(mount: re.Match[str]) -> str:
    for option in mount.group("options").split(","):
        key, _, value = option.partition("=")
        if key in ("target", "dst", "destination"):
            return value
    raise SystemExit(f"a cache mount without a target: {mount.group(0)}")


def with_cache_ids(dockerfile: str, ids: dict[str, str]) -> str:
    """Give every cache mount the ``id=`` named for its target in ``ids``."""

    def rewrite(mount: re.Match[str]) -> str:
        options = [o for o in mount.group("options").split(",") if not o.startswith("id=")]
        return "--mount=type=cache," + ",".join([*options, f"id={ids[mount_target(mount)]}"])

    return CACHE_MOUNT.sub(rewrite, dockerfile)


def cache_targets(dockerfile: str) -> list[str]:
    """Where the Dockerfile's cache mounts are mounted, in order."""
    return [mount_target(mount) for mount in CACHE_MOUNT.finditer(dockerfile)]


def edit_page(context: Path, marker: str) -> None:
    """The one-line change: the page's heading gains ``marker``."""
    page = context / PAGE
    text = page.read_text()
    if not HEADING.search(text):
        raise SystemExit(f"{PAGE} has no <h1> for the bench to change")
    page.write_text(HEADING.sub(rf"<h1>\g<text> {marker}</h1>", text, count=1))


def build(docker: Docker, dockerfile: Path, context: Path, log: Path | None, *extra: str) -> Build:
    argv = [*docker.build_command, "--progress=plain", *extra, "-f", str(dockerfile)]
    os.sync()  # no build pays for writing back the one before it (a cold one writes ~1 GB)
    started = time.perf_counter()
    result = docker(*argv, "-t", IMAGE_TAG, str(context), check=False)
    elapsed = time.perf_counter() - started
    if log is not None:
        log.write_text(result.stderr)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-30:])
        raise SystemExit(f"{docker.client} {' '.join(argv)} failed:\n{tail}")
    return Build(elapsed, step_times(result.stderr))


def step_times(progress: str) -> dict[str, str]:
    """``[stage n/m] RUN|COPY ...`` -> seconds or ``cached``, from BuildKit's plain progress.

    FROM and WORKDIR are left out: stages share them, under whichever stage's name."""
    names: dict[str, str] = {}
    times: dict[str, str] = {}
    for line in progress.splitlines():
        if step := STEP_LINE.match(line):
            if not step.group("stage").startswith("internal"):
                instruction = BENCH_ID.sub("", " ".join(step.group("instruction").split()))
                names[step.group("vertex")] = f"[{step.group('stage')}] {instruction}"
        elif (end := STEP_END.match(line)) and end.group("vertex") in names:
            cached = end.group("cached")
            times[names[end.group("vertex")]] = "cached" if cached else end.group("seconds")
    return times


def image_contains(docker: Docker, marker: str) -> bool:
    probe = ("run", "--rm", IMAGE_TAG, "grep", "-rqF", marker, ".next")
    return docker(*probe, check=False).returncode == 0


def image_size(docker: Docker, tag: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout)


def cache_mounts(docker: Docker, targets: list[str]) -> dict[str, dict[str, str]]:
    """BuildKit's records of cache mounts on these targets, by record id.

    The records name the target and the command, not the mount's id: a build on this machine
    with a cache mount on the same target looks the same."""
    listing = docker("system", "df", "-v", "--format", "{{json .BuildCache}}")
    return {
        record["ID"]: record
        for record in json.loads(listing.stdout or "[]")
        if record["CacheType"] == "exec.cachemount"
        and any(record["Description"].startswith(f"cached mount {t} from ") for t in targets)
    }


def frontend_dockerfile(frontend: Path) -> str:
    return (frontend / "Dockerfile").read_text()


def node_image() -> str:
    if not image_exists(NODE_TAG):
        with tempfile.TemporaryDirectory(prefix="astats-bench-base-") as scratch:
            node_standin(debian_base(SUITE, BASE_TAG, Path(scratch)))
    return NODE_TAG


def stand_in_text(context: Path) -> str:
    """The frontend's Dockerfile with the stand-in's FROM lines. The bench writes its variants
    outside the build context, so that they never change what ``COPY . .`` copies."""
    copy = stand_in_dockerfile(context / "Dockerfile", OFFICIAL_NODE, node_image())
    text = copy.read_text()
    copy.unlink()
    return text


@dataclass(frozen=True)
class Round:
    cold: Build
    warm: Build
    without_next_cache: Build
    cache_mount_sizes: dict[str, str]
    image_bytes: int

    @property
    def ratio(self) -> float:
        return self.cold.seconds / self.warm.seconds


def run_round(docker: Docker, frontend: Path, id_prefix: str, logs: Path | None) -> Round:
    def log(name: str) -> Path | None:
        return logs / f"{id_prefix}{name}.log" if logs else None

    workdir = Path(tempfile.mkdtemp(prefix="astats-bench-frontend-"))
    try:
        context = workdir / "frontend"
        shutil.copytree(frontend, context, ignore=shutil.ignore_patterns("node_modules", ".next"))
        text = stand_in_text(context)
        ids = {target: f"{id_prefix}{target}" for target in cache_targets(text)}
        if not any(target.endswith(NEXT_CACHE) for target in ids):
            raise SystemExit(f"{frontend / 'Dockerfile'} has no cache mount for {NEXT_CACHE}")
        dockerfile = workdir / "Dockerfile"
        dockerfile.write_text(with_cache_ids(text, ids))
        if BENCH_ID.sub("", dockerfile.read_text()) != text:
            raise SystemExit("giving the cache mounts ids changed more than their ids")
        mounts_before = cache_mounts(docker, list(ids))
        cold = build(docker, dockerfile, context, log("cold"), "--no-cache")

        marker = f"{id_prefix}warm"
        edit_page(context, marker)
        warm = build(docker, dockerfile, context, log("warm"))
        if not image_contains(docker, marker):
            raise SystemExit(f"the warm build's image lacks the page change ({marker})")
        mount_sizes = {
            record["Description"].split()[2]: record["Size"]
            for record_id, record in cache_mounts(docker, list(ids)).items()
            if record_id not in mounts_before
        }
        image_bytes = image_size(docker, IMAGE_TAG)

        empty_next_cache = {
            target: f"{mount_id}-empty" if target.endswith(NEXT_CACHE) else mount_id
            for target, mount_id in ids.items()
        }
        uncached = workdir / "Dockerfile.empty-next-cache"
        uncached.write_text(with_cache_ids(text, empty_next_cache))
        edit_page(context, f"{id_prefix}empty")
        without = build(docker, uncached, context, log("empty-next-cache"))
        return Round(cold, warm, without, mount_sizes, image_bytes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def print_steps(last: Round) -> None:
    print("  steps of its last round, seconds (`cached`: from the layer cache):")
    print(f"    {'step':<66} {'cold':>6} {'warm':>6} {'no .next/cache':>14}")
    for step, cold in last.cold.steps.items():
        warm = last.warm.steps.get(step, "-")
        without = last.without_next_cache.steps.get(step, "-")
        print(f"    {step[:66]:<66} {cold:>6} {warm:>6} {without:>14}")


def summarise(frontend: Path, rounds: list[Round], base_bytes: int) -> None:
    median = statistics.median(r.ratio for r in rounds)
    verdict = "ok" if median >= TARGET else "BELOW TARGET"
    size = rounds[-1].image_bytes
    print(f"{frontend}:")
    print(f"  cold/warm: median of per-round ratios {median:.1f} (target >= {TARGET}: {verdict})")
    print(f"  image: {size / 1e6:.1f} MB, {(size - base_bytes) / 1e6:.1f} MB above its base")
    for target, mount_size in rounds[-1].cache_mount_sizes.items():
        print(f"  cache mount {target} after the warm build: {mount_size}")
    print_steps(rounds[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--logs", type=Path, help="write each build's BuildKit output here")
    parser.add_argument(
        "--frontend",
        type=Path,
        action="append",
        help="a frontend to build (default: the demo's); twice to compare two in the same run",
    )
    args = parser.parse_args()
    frontends: list[Path] = args.frontend or [FRONTEND_DIR]
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)

    docker = buildkit_docker()
    run_id = f"astats-bench-frontend-{secrets.token_hex(4)}"
    base_bytes = image_size(docker, node_image())
    print(f"{docker.client} {' '.join(docker.build_command)}; {NODE_TAG} for {OFFICIAL_NODE}")
    print(f"base image {base_bytes / 1e6:.1f} MB")
    print("round frontend  cold s  warm s cold/warm warm, no .next/cache s")
    targets = [t for frontend in frontends for t in cache_targets(frontend_dockerfile(frontend))]
    mounts_before = cache_mounts(docker, targets)
    rounds: dict[Path, list[Round]] = {frontend: [] for frontend in frontends}
    try:
        for number in range(1, args.rounds + 1):
            order = list(enumerate(frontends, 1))
            for index, frontend in order if number % 2 else reversed(order):
                done = run_round(docker, frontend, f"{run_id}-r{number}-f{index}-", args.logs)
                rounds[frontend].append(done)
                print(
                    f"{number:>5} {index:>8} {done.cold.seconds:>7.1f} {done.warm.seconds:>7.1f} "
                    f"{done.ratio:>9.1f} {done.without_next_cache.seconds:>22.1f}"
                )
        for index, frontend in enumerate(frontends, 1):
            print(f"frontend {index}: ", end="")
            summarise(frontend, rounds[frontend], base_bytes)
    finally:
        docker("image", "rm", IMAGE_TAG, check=False)
        for record_id in cache_mounts(docker, targets).keys() - mounts_before.keys():
            docker("builder", "prune", "--force", "--filter", f"id={record_id}", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

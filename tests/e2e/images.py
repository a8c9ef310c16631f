"""The local images an end-to-end stack runs, made without a registry.

The Docker tests' stand-ins serve for the official images the stack names (PostgreSQL,
python for the backend's build, nginx with `resolve`); the frontend's ``node:20-slim`` stands in
as this host's own Node 20 on the same debootstrapped bookworm base. The demo app's
Dockerfiles are used as they are, except for their ``FROM`` lines, which name the stand-ins:
`stand_in_dockerfile` writes that copy, beside the original, into the throwaway project.

    ./venv/bin/python -m tests.e2e.images      # build what is missing and print the tags
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.docker.images import BASE_TAG, SUITE, postgres_standin
from tests.docker.python_image import OFFICIAL_PYTHON, python_standin
from tests.proxy.nginx_image import nginx_image
from tests.support.debian_images import ImageError, build_lock, debian_base, run_step

OFFICIAL_NODE = "node:20-slim"
NODE_TAG = "astats-test/node:20-bookworm"
NGINX_TAG = "astats-test/nginx-official:sid"

# The parts of the official nginx image's contract the stack's nginx.conf relies on, on top of
# the proxy tests' nginx: its `nginx` user (uid 101) and its temp-path root.
NGINX_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
RUN groupadd --system --gid 101 nginx \\
    && useradd --system --gid nginx --uid 101 --no-create-home --home-dir /nonexistent \\
       --shell /bin/false nginx \\
    && mkdir -p /var/cache/nginx \\
    && chown nginx:nginx /var/cache/nginx
"""

NODE_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
# The official image's `node` user (uid 1000), its binaries in /usr/local/bin.
RUN groupadd --gid 1000 node \\
    && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
    && apt-get update \\
    && apt-get install -y --no-install-recommends ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY local-ca/ /usr/local/share/ca-certificates/
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
    && update-ca-certificates
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
"""


@dataclass(frozen=True)
class StandIns:
    postgres: str
    python: str
    node: str
    nginx: str


def node_standin(base: str) -> str:
    """Build the stand-in for ``node:20-slim`` from this host's Node 20; return its tag."""
    node = shutil.which("node")
    if node is None:
        raise ImageError("node is not installed on this host (apt-get install -y nodejs npm)")
    node_path = Path(node).resolve()
    npm_dir = node_path.parent.parent / "lib" / "node_modules" / "npm"
    if not npm_dir.is_dir():
        raise ImageError(f"npm is not installed beside {node_path} (apt-get install -y npm)")
    with build_lock("node-standin"), tempfile.TemporaryDirectory(prefix="astats-node-") as ctx:
        Path(ctx, "Dockerfile").write_text(NODE_DOCKERFILE)
        shutil.copy2(node_path, Path(ctx, "node"))
        shutil.copytree(npm_dir, Path(ctx, "npm"), symlinks=True)
        local_ca = Path(ctx, "local-ca")
        local_ca.mkdir()
        for cert in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
            shutil.copyfile(cert, local_ca / cert.name)
        run_step(
            ["docker", "build", "--force-rm", "--build-arg", f"BASE={base}", "-t", NODE_TAG, ctx],
            "building the node:20-slim stand-in",
        )
    return NODE_TAG


def nginx_standin(proxy_nginx: str) -> str:
    """The proxy tests' nginx with the official image's user and cache directory."""
    with build_lock("nginx-official"), tempfile.TemporaryDirectory(prefix="astats-ngx-") as ctx:
        Path(ctx, "Dockerfile").write_text(NGINX_DOCKERFILE)
        run_step(
            [
                "docker",
                "build",
                "--force-rm",
                "--build-arg",
                f"BASE={proxy_nginx}",
                "-t",
                NGINX_TAG,
                ctx,
            ],
            "building the nginx stand-in",
        )
    return NGINX_TAG


def stand_ins() -> StandIns:
    with tempfile.TemporaryDirectory(prefix="astats-e2e-base-") as scratch:
        base = debian_base(SUITE, BASE_TAG, Path(scratch))
    return StandIns(
        postgres=postgres_standin(base),
        python=python_standin(base),
        node=node_standin(base),
        nginx=nginx_standin(nginx_image()),
    )


def stand_in_dockerfile(dockerfile: Path, official: str, stand_in: str) -> Path:
    """Write ``Dockerfile.e2e`` beside ``dockerfile`` with its ``FROM official`` lines
    naming ``stand_in``; refuse a Dockerfile that names ``official`` anywhere else."""
    text = dockerfile.read_text()
    from_line = re.compile(rf"^FROM\s+{re.escape(official)}(\s+AS\s+\S+)?\s*$", re.M | re.I)
    if not from_line.search(text) or official in from_line.sub("", text):
        raise ImageError(f"{dockerfile} names {official} other than in FROM lines")
    target = dockerfile.with_name("Dockerfile.e2e")
    target.write_text(from_line.sub(lambda m: f"FROM {stand_in}{m.group(1) or ''}", text))
    return target


STAND_IN_FOR = {"backend": OFFICIAL_PYTHON, "frontend": OFFICIAL_NODE}

if __name__ == "__main__":
    print(stand_ins())

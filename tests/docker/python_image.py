"""The demo backend's image, built from its real Dockerfile without a registry.

The Dockerfile starts ``FROM python:3.11-slim``, the official image, which cannot be pulled here
(no registry is reachable). It stands in as Debian bookworm's own Python 3.11 on the
debootstrapped bookworm base (``tests/docker/images.py``): the official ``3.11-slim`` is built
on bookworm too, so the same libc and Python minor version the wheels are chosen for. The parts
of the official image's contract the Dockerfile and the program rely on are kept: ``python`` and
``pip`` as ``/usr/local/bin/python`` and ``/usr/local/bin/pip``, a plain ``pip install`` as
root that puts console scripts (``uvicorn``, ``alembic``) on PATH in /usr/local/bin, and
``groupadd``/``useradd`` (bookworm's passwd package, part of minbase). One addition: the host's
site-local CA certificates (``/usr/local/share/ca-certificates``), so that a build container
trusts what the host trusts, e.g. an intercepting proxy on the way to the package index.

The backend image is then built from ``examples/demo-app/backend/Dockerfile`` and its context
as they are, except for the one ``FROM`` line, which names the stand-in: that text goes to a
temporary file given to ``docker build --file``. That touches no image tag outside
``astats-test/`` (aliasing the stand-in as ``python:3.11-slim`` would change what that name means
to everything else on the engine, and to parallel runs), and needs no BuildKit named contexts,
which this engine's classic builder lacks. Only the ``FROM`` line may differ: `backend_dockerfile`
refuses a Dockerfile that names its base anywhere else or has another stage.

Both builds run once per test run (once in all, under pytest-xdist: ``built_once_per_run``);
Docker's layer cache makes them nearly free once they have run, and a changed Dockerfile or
requirements.txt is never hidden behind a stale tag. The ``pip install``
in the backend's Dockerfile needs the package index, reached from the build container as from
the host.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from tests.docker.images import REPO_ROOT
from tests.support.debian_images import ImageError, built_once_per_run, run_step

BACKEND_CONTEXT = REPO_ROOT / "examples" / "demo-app" / "backend"
BACKEND_DOCKERFILE = BACKEND_CONTEXT / "Dockerfile"
OFFICIAL_PYTHON = "python:3.11-slim"
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
PYTHON_TAG = "astats-test/python:3.11-slim"
BACKEND_TAG = "astats-test/demo-backend:latest"

PYTHON_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
# Without EXTERNALLY-MANAGED, Debian's pip installs as root into /usr/local like the official
# image's own pip (Debian patches it to use /usr/local/lib/python3.11/dist-packages and
# /usr/local/bin), leaving the packages Debian manages alone.
RUN apt-get update \\
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \\
       ca-certificates \\
    && rm -rf /var/lib/apt/lists/* \\
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \\
    && ln -s /usr/bin/python3 /usr/local/bin/python \\
    && ln -s /usr/bin/python3 /usr/local/bin/python3 \\
    && ln -s /usr/bin/pip3 /usr/local/bin/pip \\
    && ln -s /usr/bin/pip3 /usr/local/bin/pip3
# The host's site-local CAs (an intercepting proxy's, say): without them the backend build's
# `pip install` cannot reach the index the host reaches. Empty when the host has none.
COPY local-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV LANG=C.UTF-8
CMD ["python3"]
"""

_FROM_LINE = re.compile(rf"^FROM\s+{re.escape(OFFICIAL_PYTHON)}\s*$", re.MULTILINE)


def python_standin(base: str) -> str:
    """Build the stand-in for ``python:3.11-slim`` on ``base``; return its tag."""

    def build() -> None:
        with tempfile.TemporaryDirectory(prefix="astats-py-") as ctx:
            Path(ctx, "Dockerfile").write_text(PYTHON_DOCKERFILE)
            local_ca = Path(ctx, "local-ca")
            local_ca.mkdir()
            for cert in sorted(LOCAL_CA_DIR.glob("*.crt")):
                shutil.copyfile(cert, local_ca / cert.name)
            # --force-rm: a failed step leaves no container behind.
            run_step(
                [
                    "docker",
                    "build",
                    "--force-rm",
                    "--build-arg",
                    f"BASE={base}",
                    "--tag",
                    PYTHON_TAG,
                    ctx,
                ],
                "building the python:3.11-slim stand-in",
            )

    return built_once_per_run("python-standin", PYTHON_TAG, build)


def backend_dockerfile(python_image: str) -> str:
    """The demo backend's Dockerfile with its one ``FROM`` naming ``python_image``."""
    text = BACKEND_DOCKERFILE.read_text()
    if len(_FROM_LINE.findall(text)) != 1 or len(re.findall(r"^FROM\s", text, re.M)) != 1:
        raise ImageError(
            f"{BACKEND_DOCKERFILE.relative_to(REPO_ROOT)} no longer has exactly one "
            f"`FROM {OFFICIAL_PYTHON}`; update tests/docker/python_image.py to match"
        )
    if OFFICIAL_PYTHON in _FROM_LINE.sub("", text):
        raise ImageError(f"{OFFICIAL_PYTHON} is named outside the FROM line")
    return _FROM_LINE.sub(f"FROM {python_image}", text)


def backend_image(python_image: str) -> str:
    """Build the demo backend's real Dockerfile and context on ``python_image``."""
    dockerfile = backend_dockerfile(python_image)

    def build() -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".Dockerfile") as f:
            f.write(dockerfile)
            f.flush()
            # A Dockerfile outside the context is sent along with it by the CLI; the context,
            # and its .dockerignore, stay the real ones.
            run_step(
                [
                    "docker",
                    "build",
                    "--force-rm",
                    "--file",
                    f.name,
                    "--tag",
                    BACKEND_TAG,
                    str(BACKEND_CONTEXT),
                ],
                f"building {BACKEND_DOCKERFILE.relative_to(REPO_ROOT)}",
            )

    return built_once_per_run("demo-backend", BACKEND_TAG, build)

"""Local images for the Docker tests, made without a registry (none is reachable here).

- a Debian bookworm base: ``debootstrap --variant=minbase`` + ``docker import``, kept by tag so
  repeated runs skip the ~45 s bootstrap;
- a stand-in for the official ``postgres:15-bookworm``: Debian's own PostgreSQL 15 on that base,
  with the subset of the official image's contract the stack relies on (``POSTGRES_USER``,
  ``POSTGRES_DB``, ``POSTGRES_PASSWORD[_FILE]``, ``PGDATA``, uid 999 ``postgres``, the server
  binaries on PATH, scram-sha-256 for TCP, listening on all addresses, started as root or as
  ``postgres``);
- the backup image, built from the repo's real ``docker/backup/Dockerfile`` on the stand-in;
- a stand-in for a Next.js frontend's image on the ``node:20-slim`` stand-in of
  ``tests/e2e/images.py``: a server answering every path, static files where Next.js puts them,
  the official image's ``node`` user.

Docker's layer cache makes the two builds nearly free once they have run; under pytest-xdist
they run once per test run, not once per worker (``built_once_per_run``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.support.debian_images import build_lock, built_once_per_run, debian_base, run_step

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKUP_DOCKERFILE = REPO_ROOT / "docker" / "backup" / "Dockerfile"
DATABASE_DOCKERFILE = REPO_ROOT / "docker" / "postgres" / "Dockerfile"
BASE_TAG = "astats-test/bookworm:minbase"
POSTGRES_TAG = "astats-test/postgres:15-bookworm"
BACKUP_TAG = "astats-test/backup:latest"
DATABASE_TAG = "astats-test/database:latest"
SUITE = "bookworm"

POSTGRES_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The official image's uid/gid, created before the package would pick a free system uid.
RUN groupadd --system --gid=999 postgres \\
    && useradd --system --gid=postgres --uid=999 --home-dir=/var/lib/postgresql \\
       --shell=/bin/bash postgres \\
    && mkdir -p /var/lib/postgresql && chown -R postgres:postgres /var/lib/postgresql
# Like the official image, no cluster comes with the package: the entrypoint makes one in PGDATA.
RUN mkdir -p /etc/postgresql-common/createcluster.d \\
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/no-main.conf \\
    && apt-get update \\
    && apt-get install -y --no-install-recommends postgresql-15 \\
    && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql \\
    && chmod 2777 /var/run/postgresql
ENV PATH=$PATH:/usr/lib/postgresql/15/bin \\
    PGDATA=/var/lib/postgresql/data
# As in the official image: PGDATA exists, postgres's, open to all until the entrypoint makes it
# 0700, so the server can start as `postgres` on a fresh volume (which copies this directory).
RUN mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 1777 "$PGDATA"
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
"""

POSTGRES_ENTRYPOINT = """\
#!/bin/bash
# The part of the official image's docker-entrypoint.sh the stack uses: on first start,
# initialise PGDATA with POSTGRES_USER as superuser (password from POSTGRES_PASSWORD_FILE or
# POSTGRES_PASSWORD), scram-sha-256 over TCP, and create POSTGRES_DB; then run the server.
set -Eeuo pipefail
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    password="$(< "$POSTGRES_PASSWORD_FILE")"
  else
    password="${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is required}"
  fi
  initdb --username="$user" --pwfile=<(printf '%s\\n' "$password") \\
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
  printf 'host all all all scram-sha-256\\n' >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\\n" >> "$PGDATA/postgresql.conf"
  # A socket-only server, so nothing can connect over TCP before the database exists.
  pg_ctl --wait --options="-c listen_addresses=''" start
  if [ "$db" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username="$user" --dbname=postgres --set=db="$db" \\
      <<< 'CREATE DATABASE :"db";'
  fi
  pg_ctl --wait --mode=fast stop
fi
exec "$@"
"""


def bookworm_base(scratch: Path) -> str:
    """The base image's tag, bootstrapping and importing it unless it already exists."""
    with build_lock("bookworm-base"):
        return debian_base(SUITE, BASE_TAG, scratch)


def postgres_standin(base: str) -> str:
    """Build the stand-in for ``postgres:15-bookworm`` on ``base``; return its tag."""

    def build() -> None:
        with tempfile.TemporaryDirectory(prefix="astats-pg-image-") as context:
            Path(context, "Dockerfile").write_text(POSTGRES_DOCKERFILE)
            entrypoint = Path(context, "entrypoint.sh")
            entrypoint.write_text(POSTGRES_ENTRYPOINT)
            entrypoint.chmod(0o755)
            run_step(
                ["docker", "build", "--build-arg", f"BASE={base}", "--tag", POSTGRES_TAG, context],
                "building the postgres stand-in",
            )

    return built_once_per_run("postgres-standin", POSTGRES_TAG, build)


def _repo_image(dockerfile: Path, base: str, tag: str, once: str) -> str:
    """Build one of the repo's Dockerfiles (the repo root as context), as the program does,
    with `base` as its POSTGRES_IMAGE."""
    argv = [
        "docker",
        "build",
        "--file",
        str(dockerfile),
        "--build-arg",
        f"POSTGRES_IMAGE={base}",
        "--tag",
        tag,
        str(REPO_ROOT),
    ]
    what = f"building {dockerfile.relative_to(REPO_ROOT)}"
    return built_once_per_run(once, tag, lambda: run_step(argv, what))


def database_image(postgres_image: str) -> str:
    """The repo's database Dockerfile (pgBackRest added) on ``postgres_image``."""
    return _repo_image(DATABASE_DOCKERFILE, postgres_image, DATABASE_TAG, "database-image")


def backup_image(postgres_image: str) -> str:
    """The repo's backup Dockerfile on ``postgres_image`` (the database image, which carries
    pgBackRest)."""
    return _repo_image(BACKUP_DOCKERFILE, postgres_image, BACKUP_TAG, "backup-image")


FRONTEND_TAG = "astats-test/frontend:latest"
FRONTEND_DOCKERFILE = """\
ARG NODE
FROM ${NODE}
WORKDIR /app
COPY server.js ./
COPY static/ ./.next/static/
USER 1000:1000
EXPOSE 3000
CMD ["node", "server.js"]
"""
FRONTEND_SERVER = """\
// Answers every path, as a Next.js server answers its pages.
const http = require("http");
http
  .createServer((request, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end("<html><body>astats frontend stand-in</body></html>");
  })
  .listen(Number(process.env.PORT || 3000), process.env.HOSTNAME || "0.0.0.0");
"""
FRONTEND_CHUNK = "_next/static/chunks/app-standin.js"


def frontend_standin(node_image: str) -> str:
    """Build the frontend stand-in on ``node_image``; return its tag."""

    def build() -> None:
        with tempfile.TemporaryDirectory(prefix="astats-frontend-image-") as context:
            Path(context, "Dockerfile").write_text(FRONTEND_DOCKERFILE)
            Path(context, "server.js").write_text(FRONTEND_SERVER)
            chunk = Path(context, "static", FRONTEND_CHUNK.removeprefix("_next/static/"))
            chunk.parent.mkdir(parents=True)
            chunk.write_text("console.log('astats');\n")
            run_step(
                [
                    "docker",
                    "build",
                    "--build-arg",
                    f"NODE={node_image}",
                    "-t",
                    FRONTEND_TAG,
                    context,
                ],
                "building the frontend stand-in",
            )

    return built_once_per_run("frontend-standin", FRONTEND_TAG, build)


ACME_CONTEXT = REPO_ROOT / "docker" / "acme"
ACME_TAG = "astats-test/acme:latest"


def acme_image(base: str) -> str:
    """Build the repo's ACME client Dockerfile, as the program does (its own directory is the
    context), on ``base`` in place of ``debian:bookworm-slim``."""
    argv = [
        "docker",
        "build",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--tag",
        ACME_TAG,
        str(ACME_CONTEXT),
    ]
    what = f"building {ACME_CONTEXT.relative_to(REPO_ROOT)}/Dockerfile"
    return built_once_per_run("acme-image", ACME_TAG, lambda: run_step(argv, what))

"""Local images for the Docker tests, made without a registry (none is reachable here).

- a Debian bookworm base: ``debootstrap --variant=minbase`` + ``docker import``, kept by tag so
  repeated runs skip the ~45 s bootstrap;
- a stand-in for the official ``postgres:15-bookworm``: Debian's own PostgreSQL 15 on that base,
  with the subset of the official image's contract the stack relies on (``POSTGRES_USER``,
  ``POSTGRES_DB``, ``POSTGRES_PASSWORD[_FILE]``, ``PGDATA``, uid 999 ``postgres``, the server
  binaries on PATH, scram-sha-256 for TCP, listening on all addresses);
- the backup image, built from the repo's real ``docker/backup/Dockerfile`` on the stand-in.

Docker's layer cache makes the two builds nearly free once they have run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKUP_DOCKERFILE = REPO_ROOT / "docker" / "backup" / "Dockerfile"
BASE_TAG = "astats-test/bookworm:minbase"
POSTGRES_TAG = "astats-test/postgres:15-bookworm"
BACKUP_TAG = "astats-test/backup:latest"
SUITE = "bookworm"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
IMPORT_CHANGES = (
    # `docker import` records no config: without a PATH here, the stand-in's `ENV PATH=$PATH:...`
    # would start with an empty entry.
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["/bin/bash"]',
)

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


class ImageError(RuntimeError):
    """An image could not be made; the message says which step and why."""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The host's Debian mirror, as apt is configured (a deb822 file or a one-line list)."""
    for path in sources:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():
            match = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match and match.group(2) == SUITE:
                return match.group(1)
    raise ImageError(f"no Debian {SUITE} mirror in {', '.join(map(str, sources))}")


def bookworm_base(scratch: Path) -> str:
    """The base image's tag, bootstrapping and importing it unless it already exists."""
    if image_exists(BASE_TAG):
        return BASE_TAG
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install -y debootstrap)")
    rootfs = scratch / "rootfs"
    try:
        _run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), debian_mirror()],
            "debootstrap",
        )
        changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
        with subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        ) as tar:
            imported = subprocess.run(
                ["docker", "import", *changes, "-", BASE_TAG],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
            )
        if tar.returncode != 0 or imported.returncode != 0:
            raise ImageError(f"docker import of {rootfs} failed: {imported.stderr.strip()}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_TAG


def postgres_standin(base: str) -> str:
    """Build the stand-in for ``postgres:15-bookworm`` on ``base``; return its tag."""
    with tempfile.TemporaryDirectory(prefix="astats-pg-image-") as context:
        Path(context, "Dockerfile").write_text(POSTGRES_DOCKERFILE)
        entrypoint = Path(context, "entrypoint.sh")
        entrypoint.write_text(POSTGRES_ENTRYPOINT)
        entrypoint.chmod(0o755)
        _run(
            ["docker", "build", "--build-arg", f"BASE={base}", "--tag", POSTGRES_TAG, context],
            "building the postgres stand-in",
        )
    return POSTGRES_TAG


def backup_image(postgres_image: str) -> str:
    """Build the repo's backup Dockerfile, as the program does, on ``postgres_image``."""
    _run(
        [
            "docker",
            "build",
            "--file",
            str(BACKUP_DOCKERFILE),
            "--build-arg",
            f"POSTGRES_IMAGE={postgres_image}",
            "--tag",
            BACKUP_TAG,
            str(REPO_ROOT),
        ],
        f"building {BACKUP_DOCKERFILE.relative_to(REPO_ROOT)}",
    )
    return BACKUP_TAG


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise ImageError(f"{what} failed (exit {result.returncode}):\n{tail}")

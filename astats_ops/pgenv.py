"""Database connection settings, taken from the standard libpq environment variables.

The pg_* tools read PGHOST, PGPORT, PGUSER, PGPASSWORD/PGPASSFILE themselves; this module only
resolves the names needed for file names, ``--dbname`` and error messages, and finds the tools.
"""

from __future__ import annotations

import getpass
import glob
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from astats_ops.errors import OpsError

DEBIAN_VERSIONS_DIR = "/usr/lib/postgresql"
DISK_FULL_HINT = "the database server's disk is full: free space where its data lives"
CONNECTION_HINT = "check PGHOST/PGPORT and that the database server is running"
AUTH_HINT = "check PGUSER and PGPASSWORD (or PGPASSFILE)"


@dataclass(frozen=True)
class PgTarget:
    host: str
    port: str
    user: str
    database: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PgTarget:
        env = os.environ if env is None else env
        user = env.get("PGUSER") or _os_user()
        return cls(
            host=env.get("PGHOST") or "(default socket)",
            port=env.get("PGPORT") or "5432",
            user=user,
            database=env.get("PGDATABASE") or user,
        )

    def describe(self) -> str:
        return f"database {self.database!r} on {self.host}:{self.port} as {self.user!r}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "postgres"


def find_tool(name: str, env: Mapping[str, str] | None = None) -> str:
    """Path of a PostgreSQL client tool; ``PG_BINDIR`` overrides the PATH lookup."""
    env = os.environ if env is None else env
    bindir = env.get("PG_BINDIR")
    if bindir:
        candidate = os.path.join(bindir, name)
        if os.access(candidate, os.X_OK):
            return candidate
        raise OpsError(f"{name} not found in PG_BINDIR={bindir}; check the PostgreSQL client")
    found = shutil.which(name, path=env.get("PATH"))
    if found is None:
        raise OpsError(f"{name} not found on PATH; install the PostgreSQL client tools")
    return past_the_wrapper(found, name)


def past_the_wrapper(found: str, name: str, versions_dir: str = DEBIAN_VERSIONS_DIR) -> str:
    """Debian's /usr/bin/pg_* are links to pg_wrapper, a Perl script that picks a version on
    each call (about 50 ms, several times per backup, restore and drill; the postgres images
    put these links first on PATH). With exactly one version installed, that version's own
    binary is what the wrapper would run: use it directly."""
    if os.path.basename(os.path.realpath(found)) != "pg_wrapper":
        return found
    candidates = glob.glob(os.path.join(glob.escape(versions_dir), "*", "bin", name))
    runnable = [path for path in candidates if os.access(path, os.X_OK)]
    return runnable[0] if len(runnable) == 1 else found


def connection_hint(error_text: str) -> str:
    """What the operator should check, judging by a pg_* tool's error text."""
    lowered = error_text.lower()
    # PostgreSQL says a full disk two ways: ENOSPC's own text, or a short write's hint.
    if "no space left on device" in lowered or "check free disk space" in lowered:
        return DISK_FULL_HINT
    if re.search(r'database "[^"]*" does not exist', lowered):
        return "check PGDATABASE"
    if "password" in lowered or "authentication" in lowered or "role" in lowered:
        return AUTH_HINT
    if (
        "connection to server" in lowered
        or "server closed the connection" in lowered
        or "terminating connection due to unexpected postmaster exit" in lowered
        or "terminating connection due to administrator command" in lowered
        or "could not connect" in lowered
        or "could not translate host" in lowered
        or "timeout expired" in lowered
    ):
        return CONNECTION_HINT
    return "check the database server log"

"""Throwaway PostgreSQL 15 clusters for tests and benchmarks.

``initdb``/``pg_ctl`` refuse to run as root, so the cluster runs as the ``postgres`` OS user
(via ``runuser`` when the caller is root). The data directory and the unix socket live in a
fresh temp dir owned by that user; the server listens on the socket only, or also on
127.0.0.1 when ``tcp=True``. Two password-authenticated (scram-sha-256) roles exist: the
superuser ``postgres`` and the application role ``astats``, which owns the ``astats`` database.

Usage::

    with postgres_cluster() as pg:
        subprocess.run(["pg_dump", "-Fc"], env=pg.env(), check=True)
        pg.psql("SELECT 1")

Under CI (``CI=true``) a missing binary raises :class:`PostgresUnavailableError` so the test fails;
:func:`skip_or_fail` turns that into a pytest skip outside CI.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SERVER_BIN_DIRS = ("/usr/local/bin", "/usr/lib/postgresql/15/bin")
CLIENT_BIN_DIRS = ("/usr/bin", "/usr/lib/postgresql/15/bin", "/usr/local/bin")
SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
CLIENT_TOOLS = ("pg_dump", "pg_restore", "psql")
OS_USER = "postgres"
APP_ROLE = "astats"
APP_DATABASE = "astats"


class PostgresUnavailableError(RuntimeError):
    """A PostgreSQL binary or the ``postgres`` OS user is missing."""


def find_binary(name: str, dirs: tuple[str, ...] = SERVER_BIN_DIRS + CLIENT_BIN_DIRS) -> str:
    """Absolute path of a PostgreSQL binary, looking in the usual places then on PATH."""
    for directory in dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise PostgresUnavailableError(
            f"{name} not found in {', '.join(dirs)} or PATH; install PostgreSQL 15 "
            "(server and client packages)"
        )
    return found


def check_available(extra_tools: tuple[str, ...] = ()) -> None:
    """Raise :class:`PostgresUnavailableError` unless a cluster can be started here."""
    for name in SERVER_TOOLS:
        find_binary(name, SERVER_BIN_DIRS)
    for name in CLIENT_TOOLS + extra_tools:
        find_binary(name, CLIENT_BIN_DIRS)
    try:
        pwd.getpwnam(OS_USER)
    except KeyError as exc:
        raise PostgresUnavailableError(f"OS user {OS_USER!r} does not exist") from exc
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise PostgresUnavailableError("runuser not found (needed to start postgres as non-root)")


def skip_or_fail(extra_tools: tuple[str, ...] = ()) -> None:
    """In a pytest context: fail under CI, skip elsewhere, when PostgreSQL is unavailable."""
    from tests.support.ci import unavailable

    try:
        check_available(extra_tools)
    except PostgresUnavailableError as exc:
        unavailable(f"PostgreSQL unavailable: {exc}")


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresCluster:
    """A running throwaway cluster; build it with :func:`postgres_cluster`."""

    root: Path
    port: int
    tcp: bool
    superuser_password: str
    password: str
    user: str = APP_ROLE
    database: str = APP_DATABASE
    _env_base: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def host(self) -> str:
        """The unix socket directory, usable as PGHOST."""
        return str(self.socket_dir)

    def env(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        tcp: bool = False,
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Environment with the libpq variables set for this cluster.

        Defaults to the application role and database over the unix socket. Pass
        ``base={}`` to start from an empty environment instead of ``os.environ``.
        """
        env = dict(os.environ if base is None else base)
        for key in ("PGSERVICE", "PGPASSFILE", "PGHOSTADDR", "PGOPTIONS", "PGSSLMODE"):
            env.pop(key, None)
        chosen_user = user or self.user
        if password is None:
            password = self.superuser_password if chosen_user == OS_USER else self.password
        if tcp and not self.tcp:
            raise ValueError("cluster was started without tcp=True")
        env.update(
            PGHOST="127.0.0.1" if tcp else self.host,
            PGPORT=str(self.port),
            PGUSER=chosen_user,
            PGPASSWORD=password,
            PGDATABASE=database or self.database,
            PGCONNECT_TIMEOUT="5",
        )
        return env

    def psql(
        self,
        sql: str,
        *,
        user: str | None = None,
        database: str | None = None,
        check: bool = True,
    ) -> str:
        """Run SQL with psql (unaligned, tuples only) and return stdout."""
        result = subprocess.run(
            [
                find_binary("psql", CLIENT_BIN_DIRS),
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
            ],
            input=sql,
            env=self.env(user=user, database=database),
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def _pg_ctl(self, *args: str) -> None:
        _run_as_postgres(
            [find_binary("pg_ctl", SERVER_BIN_DIRS), "-D", str(self.data_dir), *args],
            cwd=self.root,
        )

    def start(self) -> None:
        self._pg_ctl("-l", str(self.log_file), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def server_log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""


def _run_as_postgres(cmd: list[str], *, cwd: Path) -> None:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", OS_USER, "--", *cmd]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def postgres_cluster(
    *,
    tcp: bool = False,
    durable: bool = False,
    extra_conf: Mapping[str, str] | None = None,
) -> Iterator[PostgresCluster]:
    """Start a throwaway PostgreSQL cluster; stop it and delete its files afterwards.

    ``durable=False`` (the default) turns off fsync for speed; the data is thrown away anyway.
    """
    check_available()
    root = Path(tempfile.mkdtemp(prefix="astats-pg-"))
    cluster = PostgresCluster(
        root=root,
        port=free_tcp_port(),
        tcp=tcp,
        superuser_password=secrets.token_hex(12),
        password=secrets.token_hex(12),
    )
    try:
        os.chmod(root, 0o755)
        _chown_to_postgres(root)
        cluster.socket_dir.mkdir(mode=0o755)
        _chown_to_postgres(cluster.socket_dir)
        pwfile = root / "pwfile"
        pwfile.write_text(cluster.superuser_password + "\n")
        _chown_to_postgres(pwfile)
        _run_as_postgres(
            [
                find_binary("initdb", SERVER_BIN_DIRS),
                "-D",
                str(cluster.data_dir),
                "-U",
                OS_USER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=root,
        )
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'" if tcp else "''",
            "port": str(cluster.port),
            "unix_socket_directories": f"'{cluster.socket_dir}'",
            "max_connections": "30",
            "shared_buffers": "128MB",
        }
        if not durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        settings.update(extra_conf or {})
        with (cluster.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# throwaway test cluster\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
        cluster.start()
        cluster.psql(
            f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{cluster.password}';\n"
            f"CREATE DATABASE {APP_DATABASE} OWNER {APP_ROLE};\n",
            user=OS_USER,
            database="postgres",
        )
        yield cluster
    finally:
        if cluster.is_running():
            with contextlib.suppress(RuntimeError):
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)

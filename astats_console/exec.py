"""``astats psql`` and ``astats shell``: interactive sessions through the docker CLI.

The docker CLI does what an interactive session needs (a TTY, resizing, signals) and reaches
the same engine (``DOCKER_HOST``). No secret goes on a command line: psql runs inside the
database container over its unix socket, and a password, when one is needed, is read there
from the container's own password file into psql's environment.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import NoReturn

from docker.models.containers import Container

from astats_console.backups import launcher_of
from astats_console.errors import ConsoleError
from astats_console.stack import Stack

DB_SERVICE = "db"
# Runs in the database container; "$@" are the operator's extra psql arguments.
PSQL_SCRIPT = (
    'if [ -r "${POSTGRES_PASSWORD_FILE:-}" ]; then '
    'PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE"); export PGPASSWORD; fi; '
    'user="${POSTGRES_USER:-postgres}"; '
    'exec psql -U "$user" -d "${POSTGRES_DB:-$user}" "$@"'
)
SHELL_SCRIPT = "command -v bash >/dev/null 2>&1 && exec bash || exec sh"


def docker_exec_argv(container: Container, argv: list[str], env: dict[str, str]) -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        raise ConsoleError("an interactive session needs the docker CLI on PATH (docker.io)")
    flags = ["-i", "-t"] if sys.stdin.isatty() and sys.stdout.isatty() else ["-i"]
    for name, value in sorted(env.items()):
        flags += ["-e", f"{name}={value}"]
    return [docker, "exec", *flags, container.id or "", *argv]


def psql_argv(stack: Stack, extra: list[str]) -> list[str]:
    container = stack.running(DB_SERVICE, role="the database")
    return docker_exec_argv(container, ["sh", "-c", PSQL_SCRIPT, "psql", *extra], {})


def shell_argv(stack: Stack, service: str) -> list[str]:
    """A shell with the service's environment: through its launcher, so its secrets are
    exported as variables (never typed)."""
    container = stack.running(service)
    shell = ["sh", "-c", SHELL_SCRIPT]
    return docker_exec_argv(container, [*launcher_of(container), *shell], {})


def replace_process(argv: list[str]) -> NoReturn:
    os.execv(argv[0], argv)

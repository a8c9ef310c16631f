"""The launcher, job wrapper and healthcheck commands the program ships, run by real programs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from components.backend import http_health_test
from components.config import DatabaseSettings
from components.database import pg_isready_test
from components.frontend import node_health_test
from components.jobs import SECRET_FROM_STDIN
from components.launcher import LAUNCHER_SOURCE
from components.nginx import LISTEN_PORT, nginx_health_test
from tests.proxy.harness import free_port, run_backend, run_frontend_stand_in, run_nginx
from tests.support.ci import unavailable
from tests.support.http_status import StatusHandler
from tests.support.postgres import find_binary, postgres_cluster, skip_or_fail


def require(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        unavailable(f"{program} is not installed")
    return found


def shells() -> list[str]:
    # Debian-based images have dash as /bin/sh, Alpine-based ones busybox ash.
    return [s for s in ("dash", "busybox") if shutil.which(s)] or ["sh"]


def sh_argv(shell: str) -> list[str]:
    return [shell, "sh"] if shell == "busybox" else [shell]


PRINT_ENV = "import json, os, sys; json.dump(dict(os.environ), sys.stdout)"
TRICKY = "p@ss w0rd/$HOME'\"`x` \\n end"


@pytest.mark.parametrize("shell", shells())
def test_launcher_exports_each_secret_file_exactly(tmp_path: Path, shell: str) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "DATABASE_URL").write_text(f"postgresql://astats:{TRICKY}@db:5432/astats\n")
    (secrets / "SECRET_KEY").write_text(TRICKY)
    (secrets / "not-a-name").write_text("ignored")
    result = subprocess.run(
        [*sh_argv(shell), str(LAUNCHER_SOURCE), sys.executable, "-c", PRINT_ENV],
        env={"PATH": os.environ["PATH"], "ASTATS_SECRETS_DIR": str(secrets)},
        capture_output=True,
        text=True,
        check=True,
    )
    env = json.loads(result.stdout)
    assert env["DATABASE_URL"] == f"postgresql://astats:{TRICKY}@db:5432/astats"
    assert env["SECRET_KEY"] == TRICKY
    assert "not-a-name" in result.stderr and "skipping" in result.stderr


@pytest.mark.parametrize("shell", shells())
def test_launcher_passes_the_exit_status_through(tmp_path: Path, shell: str) -> None:
    result = subprocess.run(
        [*sh_argv(shell), str(LAUNCHER_SOURCE), sys.executable, "-c", "raise SystemExit(7)"],
        env={"PATH": os.environ["PATH"], "ASTATS_SECRETS_DIR": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 7


@pytest.mark.parametrize("shell", shells())
@pytest.mark.parametrize("stdin", [f"{TRICKY}\n", TRICKY])
def test_job_wrapper_turns_stdin_into_the_named_variable(shell: str, stdin: str) -> None:
    result = subprocess.run(
        [*sh_argv(shell), "-c", SECRET_FROM_STDIN, "DATABASE_URL", sys.executable, "-c", PRINT_ENV],
        input=stdin,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    env = json.loads(result.stdout)
    assert env["DATABASE_URL"] == TRICKY
    assert "value" not in env


@pytest.mark.parametrize("shell", shells())
def test_a_failing_job_fails_with_its_own_status_and_output(shell: str) -> None:
    failing = "import sys; print('alembic: revision abc not found', file=sys.stderr); sys.exit(3)"
    result = subprocess.run(
        [*sh_argv(shell), "-c", SECRET_FROM_STDIN, "DATABASE_URL", sys.executable, "-c", failing],
        input="secret\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3
    assert "revision abc not found" in result.stderr


def test_pg_isready_check_counts_only_a_server_listening_on_tcp() -> None:
    skip_or_fail(("pg_isready",))
    settings = DatabaseSettings(user="astats", name="astats")
    argv = [find_binary("pg_isready"), *pg_isready_test(settings)[2:]]
    assert pg_isready_test(settings)[:2] == ["CMD", "pg_isready"]
    # The image's first-boot server listens on the unix socket only: not ready yet.
    with postgres_cluster(tcp=False) as pg:
        env = {**os.environ, "PGPORT": str(pg.port)}
        assert subprocess.run(argv, env=env, capture_output=True, check=False).returncode != 0
    with postgres_cluster(tcp=True) as pg:
        env = {**os.environ, "PGPORT": str(pg.port)}
        ready = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert ready.returncode == 0, ready.stdout + ready.stderr
        pg.stop()
        assert subprocess.run(argv, env=env, capture_output=True, check=False).returncode != 0


def run_check(test: list[str], program: str, local_binary: str, *, bash: bool) -> int:
    """Run a `CMD-SHELL` healthcheck as Docker would (`/bin/sh -c`), in a PATH holding dash,
    this machine's copy of the image's runtime and, with `bash`, bash."""
    assert test[0] == "CMD-SHELL"
    with tempfile.TemporaryDirectory(prefix="astats-check-") as scratch:
        bin_dir = Path(scratch)
        (bin_dir / program).symlink_to(Path(local_binary).resolve())
        for name in ["dash", *(["bash"] if bash else [])]:
            found = shutil.which(name)
            if found is None:
                unavailable(f"{name} is not installed")
            (bin_dir / name).symlink_to(found)
        (bin_dir / "sh").symlink_to(bin_dir / "dash")
        return subprocess.run(
            [str(bin_dir / "sh"), "-c", test[1]],
            env={"PATH": str(bin_dir)},
            capture_output=True,
            timeout=60,
            check=False,
        ).returncode


@pytest.mark.parametrize("bash", [True, False], ids=["bash", "runtime"])
def test_backend_healthcheck_follows_the_real_app(bash: bool) -> None:
    port = free_port()

    def check(path: str) -> int:
        return run_check(http_health_test(port, path), "python", sys.executable, bash=bash)

    with run_backend(port):
        assert check("/health") == 0
        assert check("/no-such-page") != 0
    assert check("/health") != 0


@pytest.mark.parametrize("bash", [True, False], ids=["bash", "runtime"])
def test_frontend_healthcheck_with_real_node(
    status_server: tuple[int, type[StatusHandler]], bash: bool
) -> None:
    node = require("node")
    port, handler = status_server

    def check(port: int) -> int:
        return run_check(node_health_test(port, "/"), "node", node, bash=bash)

    assert check(port) == 0
    handler.status = 404
    assert check(port) == 0, "below 500: the frontend is up"
    handler.status = 503
    assert check(port) != 0
    assert check(free_port()) != 0


def test_nginx_healthcheck_with_real_curl_and_nginx() -> None:
    from components.config import NginxSettings
    from components.nginx_conf import Upstreams

    curl = require("curl")
    test = nginx_health_test()
    with (
        run_frontend_stand_in() as frontend,
        run_nginx(
            NginxSettings(),
            ["/api/"],
            Upstreams(backend=f"127.0.0.1:{free_port()}", frontend=f"127.0.0.1:{frontend}"),
        ) as nginx,
    ):
        # The container listens on LISTEN_PORT; here nginx has a free port instead.
        url = test[-1].replace(f"127.0.0.1:{LISTEN_PORT}/", f"127.0.0.1:{nginx.port}/")
        assert subprocess.run([curl, *test[2:-1], url], check=False).returncode == 0
        broken = url.replace("/healthz", "/api/backend-is-down")
        assert subprocess.run([curl, *test[2:-1], broken], check=False).returncode != 0


SERVE = """
import http.server, signal, sys
handler = http.server.SimpleHTTPRequestHandler
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), handler)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("serving", flush=True)
server.serve_forever()
"""


def start_launched_server(shell: str, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*sh_argv(shell), str(LAUNCHER_SOURCE), sys.executable, "-c", SERVE, str(port)],
        env={"PATH": os.environ["PATH"], "ASTATS_SECRETS_DIR": "/nonexistent"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "serving"
    return process


@pytest.mark.parametrize("shell", shells())
def test_the_launcher_becomes_the_service_so_a_stop_reaches_it_at_once(shell: str) -> None:
    # nginx has moved traffic off a container before it is stopped (components/switch.py):
    # the stop goes straight to the service, which finishes its requests and exits.
    port = free_port()
    process = start_launched_server(shell, port)
    try:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


@pytest.mark.parametrize("shell", shells())
def test_the_launcher_keeps_the_service_exit_status(shell: str) -> None:
    result = subprocess.run(
        [*sh_argv(shell), str(LAUNCHER_SOURCE), sys.executable, "-c", "raise SystemExit(7)"],
        env={"PATH": os.environ["PATH"]},
        check=False,
        timeout=30,
    )
    assert result.returncode == 7

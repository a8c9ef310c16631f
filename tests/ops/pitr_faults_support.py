"""What the archive's fault tests need beyond tests/ops/pitr_support.py: a full backup's
physical restore into a scratch directory, the archive's segment names and their gaps, a filler
that leaves a filesystem nearly full, and an S3 endpoint over HTTPS (moto behind a TLS proxy that
can be taken down and brought back, the bucket surviving)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from tests.ops.pitr_support import SERVER_BIN, Archiving, as_postgres, chown_postgres, wait_for
from tests.support.pki import ServerCertificate, server_certificate
from tests.support.postgres import OS_USER, free_tcp_port

SEGMENTS_PER_LOG = 0x100  # 16 MiB segments: 00..FF in each 4 GiB "log"


def pgbackrest(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``pgbackrest <args>`` as the postgres user, as the scheduler runs it."""
    return subprocess.run(
        as_postgres(["pgbackrest", *args]),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def backups(env: dict[str, str], repo: int = 1) -> list[dict[str, object]]:
    """``pgbackrest info --repo=<repo>``'s backups (its own JSON rows)."""
    shown = pgbackrest(["info", "--output=json", f"--repo={repo}"], env)
    assert shown.returncode == 0, shown.stderr
    stanza = json.loads(shown.stdout)[0]
    assert stanza["status"]["code"] == 0, stanza["status"]
    rows: list[dict[str, object]] = stanza["backup"]
    return rows


# --- the archive's segment names ------------------------------------------------------------


def next_segment(name: str) -> str:
    timeline, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:24], 16)
    seg += 1
    if seg == SEGMENTS_PER_LOG:
        log, seg = log + 1, 0
    return f"{timeline:08X}{log:08X}{seg:08X}"


def segments_between(first: str, last: str) -> list[str]:
    names = [first]
    while names[-1] < last:
        names.append(next_segment(names[-1]))
    return names


def missing_segments(present: set[str], first: str, last: str) -> list[str]:
    return [name for name in segments_between(first, last) if name not in present]


def segment_names(keys: list[str]) -> set[str]:
    """The WAL segments among archive file names (``<segment>-<sha1>.lz4``); history files,
    backup labels and temp files left out."""
    found = set()
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        head, _, rest = name.partition("-")
        if len(head) == 24 and rest.endswith(".lz4") and ".backup" not in rest:
            found.add(head)
    return found


def repo_segments(repo: Path, stanza: str = "astats") -> set[str]:
    archive = repo / "archive" / stanza
    return segment_names([path.name for path in archive.glob("*-*/*/*")])


# --- a nearly full filesystem ---------------------------------------------------------------


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(directory: Path, leave_bytes: int) -> Path:
    """A filler file that leaves ``leave_bytes`` free on ``directory``'s filesystem."""
    filler = directory / "filler"
    size = free_bytes(directory) - leave_bytes
    assert size > 0, f"only {free_bytes(directory)} bytes free on {directory}"
    with filler.open("wb") as out:
        os.posix_fallocate(out.fileno(), 0, size)
    return filler


# --- a full backup restored into a scratch directory ----------------------------------------


def restored_answer(archiving: Archiving, label: str, sql: str, env: dict[str, str]) -> str:
    """Restore ``label`` alone (recovery ends where the backup became consistent) into a scratch
    directory, start a server of its own there, and answer ``sql`` from it."""
    scratch = Path(tempfile.mkdtemp(prefix="astats-pitr-restore-"))
    os.chmod(scratch, 0o700)
    chown_postgres(scratch)
    data, sockets = scratch / "data", scratch / "sockets"
    pg_ctl = f"{SERVER_BIN}/pg_ctl"
    try:
        sockets.mkdir()
        chown_postgres(sockets)
        restored = pgbackrest(
            [
                "restore",
                f"--pg1-path={data}",
                f"--set={label}",
                "--type=immediate",
                "--target-action=promote",
                "--archive-mode=off",
            ],
            env,
        )
        assert restored.returncode == 0, restored.stderr
        port = free_tcp_port()
        options = {
            "port": str(port),
            "listen_addresses": "",
            "unix_socket_directories": str(sockets),
            "archive_mode": "off",
            "shared_buffers": "32MB",
        }
        argv = [item for key, value in options.items() for item in ("-c", f"{key}={value}")]
        server_env = {**env, "PGBACKREST_ARCHIVE_ASYNC": "n"}
        started = subprocess.run(
            as_postgres(
                [
                    pg_ctl,
                    "-D",
                    str(data),
                    "-l",
                    str(scratch / "log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    shlex.join(argv),
                    "start",
                ]
            ),
            env=server_env,
            capture_output=True,
            text=True,
            check=False,
        )
        log = (scratch / "log").read_text(errors="replace") if (scratch / "log").exists() else ""
        assert started.returncode == 0, f"{started.stderr}\n{log}"
        client = {**env, "PGHOST": str(sockets), "PGPORT": str(port), "PGUSER": OS_USER}
        client["PGPASSWORD"] = archiving.pg.superuser_password

        def ask(statement: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [f"{SERVER_BIN}/psql", "-X", "-A", "-t", "-q", "-c", statement],
                env=client,
                capture_output=True,
                text=True,
                check=False,
            )

        wait_for(lambda: ask("SELECT pg_is_in_recovery();").stdout.strip() == "f", 60, "promotion")
        answer = ask(sql)
        assert answer.returncode == 0, answer.stderr
        return answer.stdout.strip()
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                env=env,
                capture_output=True,
                check=False,
            )
        shutil.rmtree(scratch, ignore_errors=True)


# --- S3 over HTTPS ---------------------------------------------------------------------------


def s3_certificate(directory: Path, host: str) -> ServerCertificate:
    """A throwaway CA and a server certificate it signs for localhost and ``host`` (an IP;
    pgBackRest 2.45 checks DNS names only, so the endpoint is localhost), readable by the
    database's OS user."""
    found = server_certificate(directory, "s3", host, [host])
    directory.chmod(0o755)
    found.ca.chmod(0o644)
    return found


class TlsProxy:
    """HTTPS on localhost:``port`` (each address localhost resolves to) in front of a plain-HTTP
    upstream (moto), in a thread of its own. ``stop`` closes the listener and every open
    connection, so the port refuses connections until ``start`` listens on the same port again;
    the upstream keeps its state."""

    def __init__(self, upstream_port: int, certificate: ServerCertificate) -> None:
        self.upstream_port = upstream_port
        self.certificate = certificate
        self.port = free_tcp_port()
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(certificate.cert, certificate.key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    def _call(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        asyncio.run_coroutine_threadsafe(make(), self._loop).result(timeout=10)

    def start(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(
                self._serve, "localhost", self.port, ssl=self._tls, reuse_address=True
            )

        self._call(listen)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._call(close)

    def shutdown(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            upstream_in, upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client.transport.abort()
            return
        self._writers.update((client, upstream))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            # An orderly end: what is buffered is sent, then TLS's close_notify.
            sink.close()

        try:
            await asyncio.gather(pipe(client_in, upstream), pipe(upstream_in, client))
        finally:
            self._writers.difference_update((client, upstream))


@contextlib.contextmanager
def https_s3(directory: Path) -> Iterator[tuple[TlsProxy, ServerCertificate, str]]:
    """moto's S3 on plain HTTP, and a TLS proxy in front of it: (proxy, its certificate, the
    plain endpoint URL for boto3)."""
    from moto.server import ThreadedMotoServer

    moto_port = free_tcp_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    proxy = TlsProxy(moto_port, s3_certificate(directory, "127.0.0.1"))
    try:
        proxy.start()
        yield proxy, proxy.certificate, f"http://127.0.0.1:{moto_port}"
    finally:
        proxy.shutdown()
        moto.stop()

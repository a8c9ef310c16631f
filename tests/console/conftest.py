"""The console's tests: a real engine, local images, one throwaway stack per test; a loopback
webhook receiver."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from docker.client import DockerClient, from_env
from docker.errors import DockerException

from tests.console.ministack import MiniStack
from tests.docker import images, python_image
from tests.support.ci import unavailable
from tests.support.debian_images import image_exists


@dataclass(frozen=True)
class Images:
    postgres: str
    backup: str
    python: str
    database: str = ""
    """The repo's database image (pgBackRest added) on the stand-in."""


@pytest.fixture(scope="session")
def engine() -> DockerClient:
    try:
        client = from_env()
        client.ping()
    except DockerException as exc:
        unavailable(f"no Docker engine answers (start dockerd): {exc}")
    return client


@pytest.fixture(scope="session")
def console_images(engine: DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Images:
    if not image_exists(images.BASE_TAG):
        if shutil.which("debootstrap") is None:
            unavailable("debootstrap is needed for the base image (apt-get install -y debootstrap)")
        if os.geteuid() != 0:
            unavailable("debootstrap needs root to build the base image")
    # The builders take their own cross-process locks and build once per run.
    base = images.bookworm_base(tmp_path_factory.mktemp("bookworm"))
    postgres = images.postgres_standin(base)
    database = images.database_image(postgres)
    return Images(
        postgres=postgres,
        backup=images.backup_image(database),
        python=python_image.python_standin(base),
        database=database,
    )


@pytest.fixture
def ministack(engine: DockerClient) -> Iterator[MiniStack]:
    stack = MiniStack(engine)
    try:
        yield stack
    finally:
        stack.close()


class Receiver(ThreadingHTTPServer):
    def __init__(self, answers: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers = answers
        self.bodies: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))
        code = self.server.answers.pop(0) if self.server.answers else 204
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(list(getattr(request, "param", [])))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()

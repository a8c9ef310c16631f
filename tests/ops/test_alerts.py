"""Failure alerts reach a webhook; a webhook that is down or hangs never fails a backup."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from astats_ops.alerts import ATTEMPTS, WEBHOOK_ENV, post_alert
from astats_ops.catalog import scan
from astats_ops.retention import Policy
from astats_ops.schedule import Job, Scheduler
from tests.ops.helpers import make_backup_files, run_cli, schedule_args
from tests.support.postgres import PostgresCluster


class Receiver:
    """A loopback webhook that records each JSON body; ``status`` is what it answers."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def hanging_url() -> Iterator[tuple[str, list[socket.socket]]]:
    """A listener that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook", accepted
    listener.close()
    for connection in accepted:
        connection.close()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/hook"


def test_a_failed_backup_is_posted_to_the_webhook_as_json(
    seeded: PostgresCluster, dest: Path, tmp_path: Path, receiver: Receiver
) -> None:
    status = tmp_path / "status.json"
    env = {**seeded.env(password="wrong"), WEBHOOK_ENV: receiver.url}

    result = run_cli(*schedule_args(dest, status, "--once"), env=env)

    assert result.returncode == 1
    [alert] = receiver.bodies
    assert alert["database"] == "astats"
    assert any(p.startswith("backup: ") and "password" in p for p in alert["problems"])
    state = json.loads(status.read_text())
    assert state["last_alert"]["delivered"] and state["last_alert"]["attempts"] == 1
    assert "s3cret" not in status.read_text() + result.stderr


def test_a_successful_run_posts_nothing(
    seeded: PostgresCluster, dest: Path, tmp_path: Path, receiver: Receiver
) -> None:
    env = {**seeded.env(), WEBHOOK_ENV: receiver.url}
    result = run_cli(*schedule_args(dest, tmp_path / "status.json", "--once"), env=env)
    assert result.returncode == 0, result.stderr
    assert receiver.bodies == []


def test_a_failed_upload_is_alerted_and_the_backup_is_kept(
    seeded: PostgresCluster,
    dest: Path,
    tmp_path: Path,
    receiver: Receiver,
    aws_credentials_file: dict[str, str],
) -> None:
    status = tmp_path / "status.json"
    env = {**aws_credentials_file, **seeded.env(base={}), WEBHOOK_ENV: receiver.url}
    offsite = ["--s3-bucket", "absent", "--s3-endpoint-url", closed_port_url()]

    result = run_cli(*schedule_args(dest, status, "--once", *offsite), env=env)

    assert result.returncode == 1
    [alert] = receiver.bodies
    assert [p.split(":")[0] for p in alert["problems"]] == ["offsite"]
    assert len(scan(dest)) == 1 and scan(dest)[0].verified


def test_a_webhook_that_is_down_neither_fails_nor_blocks_the_backup(
    seeded: PostgresCluster, dest: Path, tmp_path: Path
) -> None:
    status = tmp_path / "status.json"
    scratch = seeded.database + "_astats_drill"
    seeded.psql(f'CREATE DATABASE "{scratch}"', database="postgres")
    env = {**seeded.env(), WEBHOOK_ENV: closed_port_url()}
    try:
        result = run_cli(*schedule_args(dest, status, "--once"), env=env, timeout=60)
    finally:
        seeded.psql(f'DROP DATABASE "{scratch}"', database="postgres")

    assert result.returncode == 1, "the drill failed; the alert's failure changes nothing"
    assert f"alert not delivered after {ATTEMPTS} attempt(s)" in result.stderr
    assert "Traceback" not in result.stderr
    state = json.loads(status.read_text())
    assert state["steps"]["backup"] != "failed" and len(scan(dest)) == 1
    assert not state["last_alert"]["delivered"]
    assert "refused" in state["last_alert"]["error"].lower()


def test_a_hanging_webhook_is_given_up_within_the_deadline(
    hanging_url: tuple[str, list[socket.socket]],
) -> None:
    url, accepted = hanging_url
    delivery = post_alert(url, {"problems": ["backup: test"]}, deadline_s=1.5)
    assert not delivery.delivered
    assert "timed out" in (delivery.error or "")
    assert 1 <= delivery.attempts <= ATTEMPTS and len(accepted) == delivery.attempts


def test_an_answer_other_than_2xx_is_retried_a_bounded_number_of_times() -> None:
    failing = Receiver(status=500)
    try:
        delivery = post_alert(failing.url, {"problems": ["drill: test"]})
    finally:
        failing.close()
    assert not delivery.delivered and delivery.error == "HTTP 500"
    assert delivery.attempts == ATTEMPTS == len(failing.bodies)


def test_a_newest_backup_older_than_two_intervals_is_alerted(
    dest: Path, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_backup_files(dest, ["20240101T000000Z"], broken=set())
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    scheduler = Scheduler(Job(dest, Policy(3)), tmp_path / "status.json", 60)
    scheduler._alert([])
    [alert] = receiver.bodies
    [problem] = alert["problems"]
    assert problem.startswith("stale: newest backup astats-20240101T000000Z.dump is ")
    assert datetime.fromisoformat(alert["at"]) <= datetime.now(UTC)

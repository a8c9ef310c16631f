"""Webhook posts on a real loopback HTTP server: delivered, retried within bounds, never
holding up the caller."""

from __future__ import annotations

import socket

import pytest

from astats_console.webhook import ATTEMPTS, Webhook, post_json
from tests.console.conftest import Receiver


def test_a_report_is_posted_as_json(receiver: Receiver) -> None:
    delivery = post_json(receiver.url, {"kind": "oom", "message": "boom"})
    assert (delivery.delivered, delivery.attempts) == (True, 1)
    assert receiver.bodies == [{"kind": "oom", "message": "boom"}]


@pytest.mark.parametrize("receiver", [[500, 503]], indirect=True)
def test_errors_are_retried(receiver: Receiver) -> None:
    delivery = post_json(receiver.url, {"n": 1})
    assert (delivery.delivered, delivery.attempts) == (True, 3)
    assert len(receiver.bodies) == 3


@pytest.mark.parametrize("receiver", [[500] * 10], indirect=True)
def test_retries_are_bounded(receiver: Receiver) -> None:
    delivery = post_json(receiver.url, {"n": 1})
    assert (delivery.delivered, delivery.attempts, delivery.error) == (False, ATTEMPTS, "HTTP 500")
    assert len(receiver.bodies) == ATTEMPTS


def test_a_hanging_webhook_gives_up_within_the_deadline() -> None:
    # A listener that accepts and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        delivery = post_json(f"http://127.0.0.1:{port}/", {"n": 1}, deadline_s=1.0)
        # The one attempt that fitted timed out at the deadline; no second one started.
        assert (delivery.delivered, delivery.attempts) == (False, 1)
        assert delivery.error is not None and "timed out" in delivery.error


def test_a_dead_webhook_never_holds_up_the_caller() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        failures: list[str] = []
        hook = Webhook(url, failures.append)
        for n in range(300):
            hook.send({"message": f"report {n}"})
        # All 300 were handed over at once; the backlog dropped the oldest and said so.
        assert any("backlog full, dropped: report 0" in f for f in failures)
        assert all(url not in f for f in failures), "the URL may carry a token: never print it"

"""Fixtures the shipped-command tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import http_status


@pytest.fixture
def status_server() -> Iterator[tuple[int, type[http_status.StatusHandler]]]:
    with http_status.status_server() as served:
        yield served

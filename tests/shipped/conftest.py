"""Fixtures the shipped-command tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.shipped.checkout import Machine, make_origin
from tests.support import http_status


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """The team's remote: one commit of the project's files."""
    return make_origin(tmp_path)


@pytest.fixture
def machine(origin: Path, tmp_path: Path) -> Machine:
    """One operator's clone of `origin`."""
    return Machine.clone(origin, tmp_path / "one")


@pytest.fixture
def status_server() -> Iterator[tuple[int, type[http_status.StatusHandler]]]:
    with http_status.status_server() as served:
        yield served

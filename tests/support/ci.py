"""Whether a missing program skips a test (on a developer's machine) or fails it (under CI)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(message: str) -> NoReturn:
    """Fail under CI, where every program the suite needs is installed; skip elsewhere."""
    if in_ci():
        pytest.fail(f"{message} (under CI this fails instead of skipping)")
    pytest.skip(message)

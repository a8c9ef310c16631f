"""The throwaway-cluster helper fails under CI and skips elsewhere when PostgreSQL is missing."""

from __future__ import annotations

import pytest

from tests.support.postgres import skip_or_fail

MISSING_TOOL = ("pg_no_such_tool_for_tests",)


def test_missing_binary_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="pg_no_such_tool_for_tests not found"):
        skip_or_fail(MISSING_TOOL)


def test_missing_binary_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pg_no_such_tool_for_tests not found"):
        skip_or_fail(MISSING_TOOL)

"""The one error type the console turns into a single ``astats <command>: error: ...`` line."""

from __future__ import annotations


class ConsoleError(Exception):
    """A failure the operator can act on; the message is one line that says what to do."""


def one_line(text: str) -> str:
    return " ".join(text.split())

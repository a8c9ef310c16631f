"""The one exception type the CLI turns into a single line on stderr."""


class OpsError(Exception):
    """A failure the operator can act on; the message says what failed and what to check."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """Collapse multi-line tool output into one line."""
    parts = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(parts)


def tool_error_text(stderr: str, tool: str) -> str:
    """The useful part of a pg_* tool's stderr, as one line, without the tool-name prefixes."""
    lines = []
    for raw in stderr.splitlines():
        line = raw.strip()
        for prefix in (f"{tool}: error: ", f"{tool}: detail: ", f"{tool}: hint: ", f"{tool}: "):
            if line.startswith(prefix):
                line = line[len(prefix) :]
                break
        if line:
            lines.append(line)
    return "; ".join(lines) or "(no error output)"

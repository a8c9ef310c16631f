"""Log lines from several sources in one time order: the pure part of ``astats logs``."""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from astats_console.durations import parse_engine_time

# Leading times as loggers write them: ISO 8601 (``T`` or a space, ``.`` or ``,`` before the
# fraction, with or without a zone), optionally in brackets.
_LEADING_TIME = re.compile(
    r"^\[?(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:[.,](\d{1,9}))?\s?(Z|[+-]\d\d:?\d\d)?"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LogLine:
    at: datetime
    source: str
    text: str


def split_engine_line(raw: str) -> tuple[datetime | None, str]:
    """A line of ``docker logs --timestamps``: the engine's RFC 3339 time, a space, the text."""
    stamp, _, text = raw.partition(" ")
    moment = parse_engine_time(stamp)
    return (moment, text) if moment is not None else (None, raw)


def leading_time(text: str) -> datetime | None:
    """The time a log line starts with, if any; one without a zone is taken as UTC."""
    match = _LEADING_TIME.match(text)
    if match is None:
        return None
    fraction = (match[3] or "0")[:6].ljust(6, "0")
    zone = match[4] or "+00:00"
    if re.fullmatch(r"[+-]\d{4}", zone):
        zone = zone[:3] + ":" + zone[3:]
    try:
        moment = datetime.fromisoformat(
            f"{match[1]}T{match[2]}.{fraction}{zone.replace('Z', '+00:00')}"
        )
    except ValueError:
        return None
    return moment.astimezone(UTC)


def stamp_lines(
    texts: Iterable[tuple[datetime | None, str]], source: str, start: datetime = EPOCH
) -> list[LogLine]:
    """Lines without a time of their own (a traceback's continuation) take the previous one's."""
    lines = []
    current = start
    for moment, text in texts:
        if moment is not None:
            current = moment
        lines.append(LogLine(current, source, text))
    return lines


def merge(sources: Iterable[list[LogLine]]) -> list[LogLine]:
    """Each source is in time order; the result is too, ties kept in source order."""
    return list(heapq.merge(*sources, key=lambda line: line.at))


class LineSplitter:
    """Bytes from a stream into complete lines; a partial last line waits for its end."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self._pending + chunk
        *complete, self._pending = data.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in complete]

    def rest(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [rest.decode("utf-8", "replace")] if rest else []


@dataclass(order=True)
class _Held:
    at: datetime
    seq: int
    arrived: float = field(compare=False)
    line: LogLine = field(compare=False)


class Reorder:
    """Holds followed lines for ``hold_s`` so lines from different sources leave in time order.

    A line is released once it is the oldest held and has waited ``hold_s``; only a line that
    arrives more than ``hold_s`` late can come out behind a newer one.
    """

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._heap: list[_Held] = []
        self._seq = itertools.count()

    def push(self, line: LogLine, arrived: float) -> None:
        heapq.heappush(self._heap, _Held(line.at, next(self._seq), arrived, line))

    def ready(self, now: float) -> Iterator[LogLine]:
        while self._heap and self._heap[0].arrived + self.hold_s <= now:
            yield heapq.heappop(self._heap).line

    def drain(self) -> Iterator[LogLine]:
        while self._heap:
            yield heapq.heappop(self._heap).line

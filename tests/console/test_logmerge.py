"""Log lines from several sources come out in one time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from astats_console.logmerge import (
    EPOCH,
    LineSplitter,
    LogLine,
    Reorder,
    leading_time,
    merge,
    split_engine_line,
    stamp_lines,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_engine_lines_split_into_time_and_text() -> None:
    moment, text = split_engine_line("2026-11-24T12:00:01.500000000Z GET /health 200")
    assert (moment, text) == (at(1.5), "GET /health 200")
    assert split_engine_line("no time here") == (None, "no time here")


def test_leading_times_in_the_formats_loggers_write() -> None:
    assert leading_time("2026-11-24 12:00:02,250 ERROR boom") == at(2.25)
    assert leading_time("2026-11-24T12:00:02.25Z boom") == at(2.25)
    assert leading_time("[2026-11-24 13:00:02 +0100] boom") == at(2)
    assert leading_time("2026-11-24T14:00:02+02:00 boom") == at(2)
    assert leading_time("Traceback (most recent call last):") is None
    assert leading_time("2026-13-40 12:00:00 not a date") is None


def test_lines_without_a_time_follow_the_line_before_them() -> None:
    texts = [(None, "preamble"), (at(1), "ERROR boom"), (None, "  File x.py"), (at(3), "ok")]
    lines = stamp_lines(texts, "latest-log")
    assert [line.at for line in lines] == [EPOCH, at(1), at(1), at(3)]
    assert {line.source for line in lines} == {"latest-log"}


def test_three_sources_merge_in_time_order_ties_in_source_order() -> None:
    db = [LogLine(at(0), "db", "a"), LogLine(at(3), "db", "d")]
    backend = [LogLine(at(1), "backend", "b"), LogLine(at(3), "backend", "e")]
    nginx = [LogLine(at(2), "nginx", "c"), LogLine(at(4), "nginx", "f")]
    merged = merge([db, backend, nginx])
    assert [line.text for line in merged] == ["a", "b", "c", "d", "e", "f"]


def test_partial_lines_wait_for_their_end() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o\r\nthr") == ["two"]
    assert splitter.feed("ee \u00e9\n".encode()) == ["three \u00e9"]
    assert splitter.feed(b"last") == []
    assert splitter.rest() == ["last"]
    assert splitter.rest() == []


def test_followed_lines_leave_in_time_order_after_the_hold() -> None:
    reorder = Reorder(hold_s=0.5)
    reorder.push(LogLine(at(2), "nginx", "later"), arrived=10.0)
    reorder.push(LogLine(at(1), "backend", "earlier"), arrived=10.2)
    assert list(reorder.ready(now=10.4)) == []
    # The earlier line is held until its own hold is over, and the later one waits behind it.
    assert [line.text for line in reorder.ready(now=10.7)] == ["earlier", "later"]


def test_a_line_later_than_the_hold_still_comes_out() -> None:
    reorder = Reorder(hold_s=0.5)
    reorder.push(LogLine(at(5), "db", "first"), arrived=1.0)
    assert [line.text for line in reorder.ready(now=2.0)] == ["first"]
    reorder.push(LogLine(at(4), "backend", "late"), arrived=3.0)
    reorder.push(LogLine(at(6), "db", "held"), arrived=3.0)
    assert [line.text for line in reorder.drain()] == ["late", "held"]

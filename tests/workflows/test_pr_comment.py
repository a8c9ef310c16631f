"""scripts/pr_comment.py: the plan above the folded raw diff, in one comment that a later push
edits, against a stand-in of GitHub's comments API on loopback."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.pulumi_harness import ROOT


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("pr_comment", ROOT / "scripts" / "pr_comment.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("pr_comment", module)
    spec.loader.exec_module(sys.modules["pr_comment"])
    return sys.modules["pr_comment"]


pr_comment = _load()
LIMIT, MARKER, body, post = pr_comment.LIMIT, pr_comment.MARKER, pr_comment.body, pr_comment.post


class Comments(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.comments: list[dict[str, Any]] = [{"url": "", "body": "someone else's"}]
        self.calls: list[tuple[str, str]] = []

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Comments

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self, data: object) -> None:
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self.server.calls.append(("GET", self.path))
        assert self.headers["Authorization"] == "Bearer t0ken"
        self._answer(self.server.comments)

    def _read(self) -> dict[str, Any]:
        return dict(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def do_POST(self) -> None:
        self.server.calls.append(("POST", self.path))
        url = f"{self.server.api}/comment/{len(self.server.comments)}"
        self.server.comments.append({"url": url, "body": self._read()["body"]})
        self._answer({})

    def do_PATCH(self) -> None:
        self.server.calls.append(("PATCH", self.path))
        index = int(self.path.rsplit("/", 1)[1])
        self.server.comments[index]["body"] = self._read()["body"]
        self._answer({})


@pytest.fixture
def github() -> Iterator[Comments]:
    server = Comments()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()


def test_the_plan_comes_first_and_the_raw_diff_folded_below() -> None:
    text = body("### astats plan\n- a migration runs", "+ backend replace", "2")
    assert text.startswith(MARKER)
    assert text.index("a migration runs") < text.index("<details>") < text.index("+ backend")
    assert "_astats plan: changes_" in text
    assert "DANGER: data at risk" in body("x", "y", "3")
    assert "the plan failed (exit 1)" in body("x", "y", "1")


def test_a_huge_diff_is_cut_to_what_github_takes() -> None:
    text = body("plan", "x" * 200_000, "2")
    assert len(text) <= LIMIT
    assert "(cut: see the job log)" in text


def test_one_comment_per_pull_request_edited_on_each_push(github: Comments) -> None:
    assert post(github.api, "o/r", "7", "t0ken", body("first", "d", "2")) == "posted"
    assert post(github.api, "o/r", "7", "t0ken", body("second", "d", "0")) == "edited"
    mine = [c for c in github.comments if MARKER in c["body"]]
    assert len(mine) == 1 and "second" in mine[0]["body"]
    assert ("POST", "/repos/o/r/issues/7/comments") in github.calls

"""Post the preview's ONE pull-request comment: `astats plan --markdown` first, the raw
`pulumi preview --diff` folded below it. A hidden marker finds the comment an earlier push
posted, which is edited instead of adding another.

Usage (the preview workflow): python scripts/pr_comment.py PLAN_FILE
Environment: GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_API_URL (set by Actions), PR_NUMBER,
PREVIEW_OUTPUT (the raw preview), PLAN_EXIT (astats plan's exit code).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

MARKER = "<!-- astats-plan -->"
LIMIT = 65_000
"""GitHub refuses a comment body over 65,536 characters: the raw diff is cut to fit."""
VERDICTS = {"0": "nothing to do", "2": "changes", "3": "DANGER: data at risk"}


def body(plan: str, preview: str, exit_code: str) -> str:
    verdict = VERDICTS.get(exit_code, f"the plan failed (exit {exit_code})")
    head = f"{MARKER}\n{plan.strip()}\n\n_astats plan: {verdict}_\n\n"
    fold = "<details><summary>pulumi preview --diff</summary>\n\n```\n{}\n```\n</details>\n"
    room = LIMIT - len(head) - len(fold)
    raw = preview if len(preview) <= room else preview[: room - 40] + "\n... (cut: see the job log)"
    return head + fold.format(raw)


def _call(url: str, token: str, method: str = "GET", data: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(data).encode() if data is not None else None,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


def post(api: str, repository: str, number: str, token: str, text: str) -> str:
    """Edit the marked comment, or add it; returns what was done."""
    comments = f"{api}/repos/{repository}/issues/{number}/comments"
    page = 1
    while True:
        found = _call(f"{comments}?per_page=100&page={page}", token)
        for comment in found:
            if MARKER in str(comment.get("body", "")):
                _call(str(comment["url"]), token, "PATCH", {"body": text})
                return "edited"
        if len(found) < 100:
            break
        page += 1
    _call(comments, token, "POST", {"body": text})
    return "posted"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: pr_comment.py PLAN_FILE", file=sys.stderr)
        return 64
    env = os.environ
    text = body(Path(argv[1]).read_text(), env.get("PREVIEW_OUTPUT", ""), env.get("PLAN_EXIT", ""))
    done = post(
        env["GITHUB_API_URL"],
        env["GITHUB_REPOSITORY"],
        env["PR_NUMBER"],
        env["GITHUB_TOKEN"],
        text,
    )
    print(f"pr_comment: {done} the plan comment")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

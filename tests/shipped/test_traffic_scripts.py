"""The traffic switch's and the asset publisher's shell, as the stack runs them: under dash
(Debian-based images) and under busybox with only its own applets (Alpine-based ones).

The switch with a running nginx is tested against real nginx in tests/proxy; here, what it
does before nginx has started, and how the frontend's static files of recent releases are kept.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components.switch import PUBLISH_SCRIPT, SWITCH_SCRIPT
from tests.shipped.conftest import path_for


def run(
    shell: list[str], script: str, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shell, "-c", script, "script", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={"PATH": path_for(shell), **(env or {})},
        timeout=60,
        check=False,
    )


def test_before_nginx_starts_the_switch_only_puts_the_file_in_place(
    shell: list[str], tmp_path: Path
) -> None:
    env = {"UPSTREAM_DIR": str(tmp_path / "upstreams"), "PID_FILE": str(tmp_path / "none.pid")}
    result = run(shell, SWITCH_SCRIPT, "backend", stdin="server backend-1a2b3c:8000;\n", env=env)
    assert result.returncode == 0, result.stderr
    assert "nginx is not running; it starts on server backend-1a2b3c:8000;" in result.stdout
    live = tmp_path / "upstreams" / "backend.conf"
    assert live.read_text() == "server backend-1a2b3c:8000;\n"
    assert sorted(p.name for p in live.parent.iterdir()) == ["backend.conf"]


def test_a_switch_without_a_server_line_changes_nothing(shell: list[str], tmp_path: Path) -> None:
    upstreams = tmp_path / "upstreams"
    upstreams.mkdir()
    (upstreams / "frontend.conf").write_text("server frontend-old:3000;\n")
    env = {"UPSTREAM_DIR": str(upstreams), "PID_FILE": str(tmp_path / "none.pid")}
    result = run(shell, SWITCH_SCRIPT, "frontend", stdin="\n", env=env)
    assert result.returncode == 1
    assert result.stderr == "switch-upstream: frontend: no server line on stdin\n"
    assert (upstreams / "frontend.conf").read_text() == "server frontend-old:3000;\n"
    assert sorted(p.name for p in upstreams.iterdir()) == ["frontend.conf"]


def release(root: Path, name: str, files: dict[str, str]) -> Path:
    """A frontend image's `.next/static` with these files."""
    static = root / name / ".next" / "static"
    for relative, content in files.items():
        (static / relative).parent.mkdir(parents=True, exist_ok=True)
        (static / relative).write_text(content)
    return static


def served(assets: Path) -> set[str]:
    tree = assets / "_next" / "static"
    return {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()}


def test_the_last_releases_static_files_stay_served_and_older_ones_go(
    shell: list[str], tmp_path: Path
) -> None:
    assets = tmp_path / "assets"
    shared = {"media/font.woff2": "font"}
    for number in range(1, 5):
        static = release(
            tmp_path,
            f"r{number}",
            {
                f"chunks/page-{number}.js": f"page {number}",
                f"r{number}/_buildManifest.js": "manifest",
                **shared,
            },
        )
        result = run(shell, PUBLISH_SCRIPT, str(static), str(assets), f"img{number}", "3")
        assert result.returncode == 0, result.stderr
        assert f"publish-assets: img{number} published" in result.stdout
    # Releases 2-4 are the 3 kept: a page of release 2 still finds its chunks.
    assert served(assets) == {
        "media/font.woff2",
        *(f"chunks/page-{n}.js" for n in (2, 3, 4)),
        *(f"r{n}/_buildManifest.js" for n in (2, 3, 4)),
    }
    lists = sorted(p.name for p in (assets / ".releases").iterdir())
    assert lists == ["000002-img2", "000003-img3", "000004-img4"]
    assert not (assets / "_next" / "static" / "r1").exists(), "empty folders are removed"
    assert (assets / "_next" / "static" / "chunks" / "page-4.js").read_text() == "page 4"


def test_publishing_the_same_release_again_keeps_one_list(shell: list[str], tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    static = release(tmp_path, "r1", {"chunks/a.js": "a"})
    for _ in range(2):
        result = run(shell, PUBLISH_SCRIPT, str(static), str(assets), "img1", "3")
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (assets / ".releases").iterdir()) == ["000001-img1"]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["{static}", "{assets}", "img1", "0"], 64, "KEEP must be 1 or more, not '0'"),
        (["{static}", "{assets}", "img:1", "3"], 64, "bad release name 'img:1'"),
        (["{missing}", "{assets}", "img1", "3"], 66, "no {missing} in this image"),
    ],
)
def test_bad_publish_arguments_are_one_line_and_touch_nothing(
    shell: list[str], tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    places = {
        "static": str(release(tmp_path, "r1", {"a.js": "a"})),
        "assets": str(tmp_path / "assets"),
        "missing": str(tmp_path / "no-static"),
    }
    result = run(shell, PUBLISH_SCRIPT, *(a.format(**places) for a in args))
    assert result.returncode == status
    assert result.stderr == f"publish-assets: {message.format(**places)}" + (
        " (frontend.staticDir)\n" if status == 66 else "\n"
    )
    assert not (tmp_path / "assets").exists()

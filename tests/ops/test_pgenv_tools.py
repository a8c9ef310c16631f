"""Finding the pg_* tools: past Debian's per-call version wrapper when one version is installed."""

from __future__ import annotations

import os
from pathlib import Path

from astats_ops.pgenv import connection_hint, find_tool, past_the_wrapper
from tests.support.ci import unavailable


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def debian_layout(root: Path, versions: list[str]) -> tuple[Path, Path]:
    """/usr/bin/pg_restore -> pg_wrapper, and one bin directory per installed version."""
    wrapper = executable(root / "share" / "postgresql-common" / "pg_wrapper")
    link = root / "bin" / "pg_restore"
    link.parent.mkdir(parents=True)
    link.symlink_to(wrapper)
    for version in versions:
        executable(root / "lib" / "postgresql" / version / "bin" / "pg_restore")
    return link, root / "lib" / "postgresql"


def test_the_one_installed_version_is_used_directly(tmp_path: Path) -> None:
    link, versions = debian_layout(tmp_path, ["15"])
    assert past_the_wrapper(str(link), "pg_restore", str(versions)) == str(
        versions / "15" / "bin" / "pg_restore"
    )


def test_with_several_versions_the_wrapper_chooses(tmp_path: Path) -> None:
    link, versions = debian_layout(tmp_path, ["15", "16"])
    assert past_the_wrapper(str(link), "pg_restore", str(versions)) == str(link)


def test_a_tool_that_is_not_the_wrapper_is_kept(tmp_path: Path) -> None:
    tool = executable(tmp_path / "bin" / "pg_restore")
    assert past_the_wrapper(str(tool), "pg_restore", str(tmp_path / "none")) == str(tool)


def test_pg_bindir_still_wins(tmp_path: Path) -> None:
    tool = executable(tmp_path / "pinned" / "pg_restore")
    env = {"PG_BINDIR": str(tool.parent), "PATH": os.environ.get("PATH", "")}
    assert find_tool("pg_restore", env) == str(tool)


def test_this_hosts_debian_client_is_found_past_its_wrapper() -> None:
    wrapper = Path("/usr/bin/pg_restore")
    if not wrapper.is_symlink() or not os.path.realpath(wrapper).endswith("pg_wrapper"):
        unavailable("Debian's postgresql-client (/usr/bin/pg_restore -> pg_wrapper) is missing")
    found = find_tool("pg_restore", {"PATH": "/usr/bin:/bin"})
    assert Path(found).parent.parent.parent == Path("/usr/lib/postgresql"), found


def test_a_full_database_disk_is_named_in_both_of_postgresqls_wordings() -> None:
    enospc = 'ERROR:  could not extend file "base/1/2": No space left on device'
    short_write = (
        'ERROR:  could not extend file "pg_tblspc/1/2": wrote only 4096 of 8192 bytes at '
        "block 2; HINT:  Check free disk space."
    )
    for text in (enospc, short_write):
        assert "disk is full" in connection_hint(text)
    assert "disk is full" not in connection_hint('FATAL:  database "x" does not exist')


def test_a_server_that_went_away_mid_session_points_at_the_server() -> None:
    for text in (
        "pg_restore: error: server closed the connection unexpectedly",
        "FATAL:  terminating connection due to unexpected postmaster exit",
        "FATAL:  terminating connection due to administrator command",
    ):
        assert (
            connection_hint(text) == "check PGHOST/PGPORT and that the database server is running"
        )

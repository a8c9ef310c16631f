"""Backups restore the database exactly; restore refuses anything it cannot verify."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from astats_ops.restore import STAGING_MARKER
from astats_ops.scratch import literal
from tests.ops.helpers import (
    REPO_ROOT,
    database_fingerprint,
    databases,
    directory_state,
    run_cli,
)
from tests.support.errors import assert_one_line_error
from tests.support.postgres import PostgresCluster

DAMAGE_SQL = """
DELETE FROM public.matches WHERE id % 3 = 0;
UPDATE public.players SET rating = 0 WHERE id < 100;
DROP TABLE reporting.daily CASCADE;
CREATE TABLE public.added_after_backup (id int);
INSERT INTO public.added_after_backup VALUES (1), (2);
CREATE SCHEMA scratch;
CREATE TABLE scratch.notes (body text);
SELECT setval('public.players_id_seq', 99999);
"""


def take_backup(pg: PostgresCluster, dest: Path) -> Path:
    result = run_cli("backup", "--dest", dest, env=pg.env())
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == dest
    return path


def backup_set(dump: Path) -> list[str]:
    """The files one backup consists of: the archive, its checksum and its row counts."""
    return sorted([dump.name, dump.name + ".sha256", dump.name + ".counts.json"])


def test_backup_is_a_verified_archive_with_a_sha256sum_sidecar(
    seeded: PostgresCluster, dest: Path
) -> None:
    path = take_backup(seeded, dest)

    assert path.name.startswith("astats-") and path.name.endswith("Z.dump")
    assert sorted(p.name for p in dest.iterdir()) == backup_set(path)
    checked = subprocess.run(
        ["sha256sum", "-c", path.name + ".sha256"], cwd=dest, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = subprocess.run(
        ["pg_restore", "--list", str(path)], capture_output=True, text=True, check=True
    )
    assert "TABLE DATA public matches" in listed.stdout


def test_restore_brings_back_rows_and_schema_exactly(seeded: PostgresCluster, dest: Path) -> None:
    before = database_fingerprint(seeded)
    path = take_backup(seeded, dest)
    seeded.psql(DAMAGE_SQL)
    assert database_fingerprint(seeded) != before

    result = run_cli("restore", path, "--yes", env=seeded.env())

    assert result.returncode == 0, result.stderr
    assert "restored" in result.stdout
    assert database_fingerprint(seeded) == before
    assert seeded.psql("SELECT to_regclass('public.added_after_backup') IS NULL").strip() == "t"
    assert seeded.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'scratch'").strip() == "0"
    assert seeded.psql("SELECT reporting.total()").strip() == "4950"
    assert seeded.psql("SELECT nextval('public.players_id_seq')").strip() == "2001"


def test_restore_refuses_a_tampered_backup_and_leaves_the_database_untouched(
    seeded: PostgresCluster, dest: Path
) -> None:
    path = take_backup(seeded, dest)
    seeded.psql(DAMAGE_SQL)
    damaged = database_fingerprint(seeded)
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))

    result = run_cli("restore", path, "--yes", env=seeded.env())

    assert_one_line_error(result, "refusing to restore", "does not match")
    assert database_fingerprint(seeded) == damaged


def test_restore_refuses_a_backup_without_checksum(seeded: PostgresCluster, dest: Path) -> None:
    path = take_backup(seeded, dest)
    path.with_name(path.name + ".sha256").unlink()

    result = run_cli("restore", path, "--yes", env=seeded.env())

    assert_one_line_error(result, "refusing to restore", "missing")


def test_restore_without_a_tty_needs_yes(seeded: PostgresCluster, dest: Path) -> None:
    path = take_backup(seeded, dest)
    seeded.psql("CREATE TABLE public.still_here (id int)")

    result = run_cli("restore", path, env=seeded.env(), input_text="astats\n")

    assert_one_line_error(result, "pass --yes")
    assert seeded.psql("SELECT to_regclass('public.still_here') IS NOT NULL").strip() == "t"


def test_a_restore_that_fails_midway_is_rolled_back(seeded: PostgresCluster, dest: Path) -> None:
    """A verified archive whose data cannot be loaded (a CHECK function that changed after
    the rows were written) fails halfway through; every table must be as it was before."""
    seeded.psql(
        "CREATE FUNCTION public.small(int) RETURNS bool IMMUTABLE LANGUAGE sql"
        " AS 'SELECT $1 < 100';"
        "CREATE TABLE public.zz_checked (x int CHECK (public.small(x)));"
        "INSERT INTO public.zz_checked VALUES (50);"
        "CREATE OR REPLACE FUNCTION public.small(int) RETURNS bool IMMUTABLE LANGUAGE sql"
        " AS 'SELECT $1 < 10';"
    )
    path = take_backup(seeded, dest)
    seeded.psql(DAMAGE_SQL)
    before = database_fingerprint(seeded)

    result = run_cli("restore", path, "--yes", env=seeded.env())

    assert_one_line_error(result, "rolled back", "violates check constraint")
    assert database_fingerprint(seeded) == before


def test_list_shows_size_age_and_verification(seeded: PostgresCluster, dest: Path) -> None:
    good = take_backup(seeded, dest)
    bad = dest / "astats-20240101T000000Z.dump"
    bad.write_bytes(b"not a dump")
    (dest / (bad.name + ".sha256")).write_text("0" * 64 + f"  {bad.name}\n")
    unchecked = dest / "astats-20240102T000000Z.dump"
    unchecked.write_bytes(b"no sidecar")
    (dest / ".astats-20240103T000000Z.dump.partial").write_bytes(b"in progress")

    text = run_cli("list", "--dest", dest, env=seeded.env())
    rows = json.loads(run_cli("list", "--dest", dest, "--json", env=seeded.env()).stdout)

    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "AGE", "VERIFICATION", "DRILL"]
    assert lines[1].split()[0] == good.name and lines[1].split()[-2:] == ["ok", "-"]
    assert {row["name"]: row["verification"] for row in rows} == {
        good.name: "ok",
        bad.name: "checksum-mismatch",
        unchecked.name: "checksum-missing",
    }
    by_name = {row["name"]: row for row in rows}
    assert by_name[good.name]["size"] == good.stat().st_size
    assert by_name[bad.name]["age_seconds"] > 86400


def test_list_of_a_missing_folder_is_one_clear_line(pg: PostgresCluster, tmp_path: Path) -> None:
    result = run_cli("list", "--dest", tmp_path / "absent", env=pg.env())
    assert_one_line_error(result, "does not exist")
    assert directory_state(tmp_path) == {}


def test_restore_on_a_tty_asks_for_the_database_name(seeded: PostgresCluster, dest: Path) -> None:
    path = take_backup(seeded, dest)
    seeded.psql("CREATE TABLE public.marker (id int)")
    env = {**seeded.env(), "PYTHONPATH": str(REPO_ROOT)}

    def restore_answering(answer: str) -> subprocess.CompletedProcess[str]:
        controller, terminal = os.openpty()
        try:
            os.write(controller, answer.encode())
            return subprocess.run(
                [sys.executable, "-m", "astats_ops", "restore", str(path)],
                stdin=terminal,
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
        finally:
            os.close(terminal)
            os.close(controller)

    refused = restore_answering("nope\n")
    assert "Type the database name (astats) to confirm" in refused.stderr
    assert refused.returncode == 1 and "not confirmed" in refused.stderr
    assert seeded.psql("SELECT to_regclass('public.marker') IS NOT NULL").strip() == "t"

    confirmed = restore_answering("astats\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert seeded.psql("SELECT to_regclass('public.marker') IS NULL").strip() == "t"


def test_back_to_back_backups_get_distinct_names(seeded: PostgresCluster, dest: Path) -> None:
    first = take_backup(seeded, dest)
    second = take_backup(seeded, dest)
    assert first != second
    assert sorted(p.name for p in dest.iterdir()) == sorted(backup_set(first) + backup_set(second))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can write files for another owner")
def test_backups_written_by_root_belong_to_the_folders_owner(
    seeded: PostgresCluster, dest: Path
) -> None:
    """The scheduler may run as root (to rotate the backend's log); the image's own user
    must still be able to read, upload and restore its backups."""
    owner = pwd.getpwnam("postgres")
    os.chown(dest, owner.pw_uid, owner.pw_gid)

    path = take_backup(seeded, dest)

    for item in (path.with_name(name) for name in backup_set(path)):
        status = item.stat()
        assert (status.st_uid, status.st_gid) == (owner.pw_uid, owner.pw_gid), item
        assert status.st_mode & 0o777 == 0o600


def test_two_backups_started_in_the_same_second_get_distinct_names(
    seeded: PostgresCluster, dest: Path
) -> None:
    """Found by the first real `pulumi up`: the scheduler's first run and the rollout's
    pre-migration backup start together, and the later one failed on the other's partial file
    ("File exists"), leaving the scheduler unhealthy."""
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "astats_ops", "backup", "--dest", str(dest)],
            env=seeded.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(process.wait(timeout=120), *process.communicate()) for process in started]
    assert [code for code, _, _ in results] == [0, 0, 0], results
    paths = {Path(out.strip()) for _, out, _ in results}
    assert len(paths) == 3
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        name for path in paths for name in backup_set(path)
    )


DATABASE_PROPERTIES_SQL = """
SELECT json_build_object(
    'settings', (SELECT array_agg(c ORDER BY c) FROM pg_db_role_setting s, unnest(s.setconfig) c
                 WHERE s.setdatabase = d.oid),
    'acl', d.datacl::text, 'limit', d.datconnlimit, 'owner', pg_get_userbyid(d.datdba),
    'comment', shobj_description(d.oid, 'pg_database'))
FROM pg_database d WHERE d.datname = 'astats'
"""


def test_restore_keeps_the_databases_own_settings_grants_and_comment(
    seeded: PostgresCluster, dest: Path
) -> None:
    """They live outside the archive; the restored database takes them from the live one.
    (As the official image's superuser: a role's settings in a database need one.)"""
    path = take_backup(seeded, dest)
    seeded.psql(
        "CREATE ROLE astats_reader;"
        "ALTER DATABASE astats SET work_mem = '7MB';"
        'ALTER DATABASE astats SET search_path = "$user", public, reporting;'
        "ALTER ROLE astats_reader IN DATABASE astats SET statement_timeout = '5s';"
        "REVOKE ALL ON DATABASE astats FROM PUBLIC;"
        "GRANT CONNECT ON DATABASE astats TO astats_reader;"
        "ALTER DATABASE astats CONNECTION LIMIT 25;"
        "COMMENT ON DATABASE astats IS 'the engine''s data';",
        user="postgres",
        database="postgres",
    )
    try:
        before = seeded.psql(DATABASE_PROPERTIES_SQL, user="postgres", database="postgres")
        assert "astats_reader=c/astats" in before and "work_mem=7MB" in before

        result = run_cli("restore", path, "--yes", env=seeded.env(user="postgres"))

        assert result.returncode == 0, result.stderr
        after = seeded.psql(DATABASE_PROPERTIES_SQL, user="postgres", database="postgres")
        assert json.loads(after) == json.loads(before)
    finally:
        seeded.psql(
            "ALTER DATABASE astats RESET ALL; GRANT ALL ON DATABASE astats TO PUBLIC;"
            "ALTER DATABASE astats CONNECTION LIMIT -1; COMMENT ON DATABASE astats IS NULL;"
            "DROP OWNED BY astats_reader; DROP ROLE astats_reader;",
            user="postgres",
            database="postgres",
        )
        # The superuser's restore owns what it restored; give the next test the app's schemas.
        seeded.psql(
            "DROP SCHEMA public, reporting CASCADE;"
            "CREATE SCHEMA public AUTHORIZATION pg_database_owner;"
            "GRANT USAGE ON SCHEMA public TO PUBLIC;",
            user="postgres",
        )


def test_a_restore_with_a_session_still_connected_fails_and_changes_nothing(
    seeded: PostgresCluster, dest: Path
) -> None:
    """Writers are stopped by the operator's restore flow; one still connected is named, not
    ended, and the restore stops before the swap."""
    path = take_backup(seeded, dest)
    seeded.psql(DAMAGE_SQL)
    damaged = database_fingerprint(seeded)
    writer = subprocess.Popen(
        ["psql", "-X", "-q", "-c", "SELECT pg_sleep(60)"],
        env={**seeded.env(), "PGAPPNAME": "astats-test-writer"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = run_cli("restore", path, "--yes", env=seeded.env())
        assert writer.poll() is None, "the restore ended the writer's session"
    finally:
        writer.kill()
        writer.wait()
        # The server does not notice a killed client during pg_sleep: end its session too, or
        # it would still hold the database when the next test restores.
        seeded.psql(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = 'astats-test-writer'",
            user="postgres",
            database="postgres",
        )

    assert_one_line_error(result, "rolled back", "is being accessed by other users", "stop what")
    assert database_fingerprint(seeded) == damaged
    assert databases(seeded) == {"postgres", "template0", "template1", "astats"}


def test_a_staging_copy_left_by_a_killed_restore_is_dropped_by_the_next(
    seeded: PostgresCluster, dest: Path
) -> None:
    path = take_backup(seeded, dest)
    before = database_fingerprint(seeded)
    seeded.psql(
        f"CREATE DATABASE astats_astats_restore; "
        f"COMMENT ON DATABASE astats_astats_restore IS {literal(STAGING_MARKER)}",
        database="postgres",
    )
    seeded.psql(DAMAGE_SQL)

    result = run_cli("restore", path, "--yes", env=seeded.env())

    assert result.returncode == 0, result.stderr
    assert database_fingerprint(seeded) == before
    assert databases(seeded) == {"postgres", "template0", "template1", "astats"}

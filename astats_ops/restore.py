"""``restore``: put the database back exactly as it was when a verified backup was taken.

The checksum is checked before anything touches the database. The restore then runs as ONE
transaction that first drops every user schema (so tables created after the backup go too),
recreates ``public`` as PostgreSQL 15 creates it, and replays the archive as produced by
``pg_restore --clean --if-exists --no-owner --exit-on-error``. ``pg_restore`` writes the SQL
and ``psql -v ON_ERROR_STOP=1`` runs it; COMMIT is sent only after pg_restore has finished
cleanly, so any error on either side leaves the database as it was.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from astats_ops.catalog import checksum_path, read_checksum, sha256_of
from astats_ops.errors import OpsError
from astats_ops.pgenv import PgTarget, connection_hint, find_tool
from astats_ops.proc import PIPE, check_cancelled, spawn

RESET_SCHEMAS_SQL = """\
BEGIN;
DO $reset$
DECLARE
    schema_name name;
BEGIN
    FOR schema_name IN
        SELECT nspname FROM pg_catalog.pg_namespace
        WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
END
$reset$;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
COMMENT ON SCHEMA public IS 'standard public schema';
"""
CHUNK = 1 << 20


def verify_checksum(dump: Path) -> str:
    """The dump's sha256 if its sidecar matches; otherwise an OpsError saying why not."""
    if not dump.is_file():
        raise OpsError(f"backup file {dump} does not exist")
    expected = read_checksum(dump)
    if expected is None:
        raise OpsError(
            f"refusing to restore {dump}: checksum file {checksum_path(dump)} is missing or "
            "malformed, so the backup cannot be verified"
        )
    actual = sha256_of(dump)
    if actual != expected:
        raise OpsError(
            f"refusing to restore {dump}: sha256 {actual} does not match {expected} recorded in "
            f"{checksum_path(dump).name}; the file is damaged or was changed, use another backup"
        )
    return actual


def restore_backup(
    dump: Path,
    *,
    assume_yes: bool,
    env: Mapping[str, str] | None = None,
    confirm: Callable[[Path, PgTarget], bool] | None = None,
) -> PgTarget:
    env = dict(os.environ if env is None else env)
    target = PgTarget.from_env(env)
    pg_restore = find_tool("pg_restore", env)
    psql = find_tool("psql", env)
    verify_checksum(dump)
    if not assume_yes and not (confirm or _ask_on_tty)(dump, target):
        raise OpsError(
            f"restore into {target.describe()} not confirmed; nothing was changed "
            "(pass --yes to restore without asking)"
        )
    replay(dump, target, pg_restore, psql, env)
    return target


def _ask_on_tty(dump: Path, target: PgTarget) -> bool:
    if not sys.stdin.isatty():
        raise OpsError("refusing to restore without confirmation: stdin is not a TTY, pass --yes")
    sys.stderr.write(
        f"Restore {dump.name} into {target.describe()}? Its current contents will be "
        f"replaced. Type the database name ({target.database}) to confirm: "
    )
    sys.stderr.flush()
    return sys.stdin.readline().strip() == target.database


def replay(
    dump: Path, target: PgTarget, pg_restore: str, psql: str, env: Mapping[str, str]
) -> None:
    """Replace ``target``'s contents with the archive's, in one transaction."""
    script_cmd = [
        pg_restore,
        "--clean",
        "--if-exists",
        "--no-owner",
        "--exit-on-error",
        "--file=-",
        str(dump),
    ]
    apply_cmd = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={target.database}"]
    with (
        spawn(apply_cmd, env, stdin=PIPE) as apply,
        spawn(script_cmd, env, stdout=PIPE) as script,
    ):
        assert apply.proc.stdin is not None and script.proc.stdout is not None
        committed = _pump(script.proc.stdout, apply.proc.stdin, RESET_SCHEMAS_SQL, script.proc)
        applied = apply.result()
        check_cancelled()
        if not applied.ok:
            text = applied.error_text("psql")
            raise OpsError(
                f"restore of {dump.name} into {target.describe()} failed and was rolled back: "
                f"{text}; {connection_hint(text)}"
            )
        if script.proc.returncode != 0 or not committed:
            raise OpsError(
                f"restore of {dump.name} aborted, {target.describe()} left unchanged: "
                f"pg_restore failed: {script.result().error_text('pg_restore')}"
            )


def _pump(
    source: IO[bytes], sink: IO[bytes], prelude: str, producer: subprocess.Popen[bytes]
) -> bool:
    """Feed prelude + producer output to psql; send COMMIT only if the producer succeeded."""
    try:
        sink.write(prelude.encode())
        while chunk := source.read(CHUNK):
            sink.write(chunk)
        if producer.wait() != 0:
            return False
        sink.write(b"\nCOMMIT;\n")
        return True
    except BrokenPipeError:
        return False
    finally:
        with contextlib.suppress(BrokenPipeError):
            sink.close()

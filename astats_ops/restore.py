"""``restore``: put the database back exactly as it was when a verified backup was taken.

The checksum is checked before anything touches the server. The archive is then loaded with
parallel ``pg_restore --jobs`` (a large table's rows over several sessions) into a new staging
database ``<database>_astats_restore``, created like the live one (owner, encoding, locale,
tablespace) and marked with a comment, and checked: every table in the archive's table of
contents must exist. Only then, in ONE transaction, the
staging database takes over the live one's settings, grants, connection limit and comment, and
the two are swapped by renaming (the live one to ``<database>_astats_replaced``, dropped right
after). Any failure before the swap drops the staging copy and leaves the live database as it
was; renaming needs the live database free of sessions, so a restore with writers still
connected fails and says so rather than ending their sessions.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from astats_ops.archive import TocTable, large_tables, load, missing_tables, toc_tables
from astats_ops.catalog import checksum_path, read_checksum, recorded_counts, sha256_of
from astats_ops.errors import OpsError
from astats_ops.pgenv import PgTarget, find_tool
from astats_ops.scratch import MarkedDatabase, created, ident, literal, maintenance_session, run
from astats_ops.snapshot import Background, psql_session

STAGING_SUFFIX = "_astats_restore"
REPLACED_SUFFIX = "_astats_replaced"
STAGING_MARKER = "astats_ops restore: staging copy, swapped in when complete"
REPLACED_MARKER = "astats_ops restore: the database a restore replaced; dropped after it"
# One transaction: the staging copy takes the live database's properties (which are not in a
# pg_dump archive), then the two swap names.
SWAP_SQL = """DO $swap$
DECLARE
    live_oid oid;
    item record;
BEGIN
    SELECT oid INTO STRICT live_oid FROM pg_database WHERE datname = {live};
    FOR item IN
        SELECT s.setrole, split_part(c, '=', 1) AS name, substr(c, strpos(c, '=') + 1) AS value
        FROM pg_db_role_setting s, unnest(s.setconfig) AS c WHERE s.setdatabase = live_oid
    LOOP
        EXECUTE format('ALTER %s SET %s = %s',
            CASE WHEN item.setrole = 0 THEN format('DATABASE %I', {staging})
                ELSE format('ROLE %s IN DATABASE %I', item.setrole::regrole, {staging}) END,
            item.name,
            CASE WHEN item.name IN ('search_path', 'temp_tablespaces',
                    'session_preload_libraries', 'local_preload_libraries')
                THEN item.value ELSE quote_literal(item.value) END);
    END LOOP;
    IF (SELECT datacl FROM pg_database WHERE oid = live_oid) IS NOT NULL THEN
        EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', {staging});
        FOR item IN
            SELECT a.grantee, a.privilege_type, a.is_grantable
            FROM pg_database d, aclexplode(d.datacl) AS a
            WHERE d.oid = live_oid AND a.grantee <> d.datdba
        LOOP
            EXECUTE format('GRANT %s ON DATABASE %I TO %s%s', item.privilege_type, {staging},
                CASE WHEN item.grantee = 0 THEN 'PUBLIC' ELSE item.grantee::regrole::text END,
                CASE WHEN item.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END IF;
    EXECUTE format('ALTER DATABASE %I CONNECTION LIMIT %s', {staging},
        (SELECT datconnlimit FROM pg_database WHERE oid = live_oid));
    EXECUTE format('COMMENT ON DATABASE %I IS %L', {staging},
        shobj_description(live_oid, 'pg_database'));
    EXECUTE format('ALTER DATABASE %I RENAME TO %I', {live}, {replaced});
    EXECUTE format('COMMENT ON DATABASE %I IS %L', {replaced}, {replaced_marker});
    EXECUTE format('ALTER DATABASE %I RENAME TO %I', {staging}, {live});
END
$swap$;
SELECT 'swapped';"""
TABLES_SQL = r"""SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname)), '[]')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p');"""


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
    swap_in(dump, target, pg_restore, psql, env)
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


def swap_in(dump: Path, live: PgTarget, pg_restore: str, psql: str, env: Mapping[str, str]) -> None:
    """Replace ``live`` with the archive's contents: load a staging copy, check it, swap."""
    staging = MarkedDatabase.beside(
        live.database, STAGING_SUFFIX, STAGING_MARKER, "staging copy", "restore"
    )
    replaced = MarkedDatabase.beside(
        live.database, REPLACED_SUFFIX, REPLACED_MARKER, "replaced database", "restore"
    )
    if live.database in (staging.name, replaced.name):
        raise OpsError(f"refusing to restore into {live.describe()}: its name is reserved")
    recorded = recorded_counts(dump)
    listing = Background(lambda: toc_tables(pg_restore, dump, env, recorded))
    target = PgTarget(live.host, live.port, live.user, staging.name)
    with created(psql, env, staging, drop_after=False, like=live.database, leftovers=[replaced]):
        try:
            toc = listing.result()
            load(dump, target, pg_restore, env, split=large_tables(toc, recorded))
            _check_tables(psql, env, target, toc)
            not_dropped = _swap(psql, env, live, staging, replaced)
        except OpsError as exc:
            raise OpsError(
                f"restore of {dump.name} failed and was rolled back, {live.describe()} is "
                f"unchanged: {exc}{_sessions_hint(str(exc))}"
            ) from exc
    if not_dropped:
        print(
            f"astats_ops restore: warning: the data is restored, but dropping {replaced.name} "
            f"failed: {not_dropped}; the next restore drops it",
            file=sys.stderr,
        )


def _check_tables(psql: str, env: Mapping[str, str], target: PgTarget, toc: list[TocTable]) -> None:
    with psql_session(psql, env, target.database) as session:
        line = run(session, TABLES_SQL, f"listing the tables of {target.database}")
    missing = missing_tables(toc, (tuple(pair) for pair in json.loads(line)))
    if missing:
        raise OpsError(
            f"tables listed in the archive are missing after the load: {', '.join(missing[:5])}"
        )


def _swap(
    psql: str,
    env: Mapping[str, str],
    live: PgTarget,
    staging: MarkedDatabase,
    replaced: MarkedDatabase,
) -> str | None:
    """Swap ``staging`` in for ``live`` (an OpsError if that fails), then drop the replaced
    database; returns why that drop failed, if it did: the restore has succeeded anyway."""
    swap = SWAP_SQL.format(
        live=literal(live.database),
        staging=literal(staging.name),
        replaced=literal(replaced.name),
        replaced_marker=literal(replaced.marker),
    )
    what = f"swapping {staging.name} in for {live.database}"
    with maintenance_session(psql, env, what) as session:
        run(session, swap, what)
        if session.request(f"DROP DATABASE {ident(replaced.name)};\nSELECT 'dropped';"):
            return None
        return session.error_text()


def _sessions_hint(error: str) -> str:
    if "is being accessed by other users" not in error:
        return ""
    return "; stop what is connected to it (the backend, a psql session) and restore again"

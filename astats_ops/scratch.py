"""Databases this tool keeps beside the live one: the drill's scratch copy, the copy a restore
loads before it is swapped in, and the database a restore replaced.

Each is marked with a comment that says what it is, so one left behind by a killed run is
dropped by the next run, and a database that merely has such a name is never touched. They
are created, renamed and dropped over a connection to the maintenance database (``postgres``,
else ``template1``), never the live one: nothing runs in the live database, and renaming it
needs it free of sessions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from astats_ops.errors import OpsError
from astats_ops.pgenv import connection_hint
from astats_ops.snapshot import PsqlSession, psql_session

MAINTENANCE_DATABASES = ("postgres", "template1")
# CREATE DATABASE options that make a new database like an existing one.
LIKE_SQL = """SELECT coalesce((SELECT format(' OWNER %I ENCODING %L LOCALE_PROVIDER %s '
    'LC_COLLATE %L LC_CTYPE %L', pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding),
    CASE d.datlocprovider WHEN 'i' THEN 'icu' ELSE 'libc' END, d.datcollate, d.datctype)
    || CASE WHEN d.daticulocale IS NULL THEN '' ELSE format(' ICU_LOCALE %L', d.daticulocale) END
    || CASE WHEN t.spcname = 'pg_default' THEN '' ELSE format(' TABLESPACE %I', t.spcname) END
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = {database}),
    'absent');"""


@dataclass(frozen=True)
class MarkedDatabase:
    name: str
    marker: str
    role: str
    made_by: str

    @classmethod
    def beside(
        cls, database: str, suffix: str, marker: str, role: str, made_by: str
    ) -> MarkedDatabase:
        """``role`` says what it is ("scratch database"), ``made_by`` which command makes it."""
        # Identifiers are cut at 63 bytes; keep the suffix, which is what marks the name.
        kept = database.encode()[: 63 - len(suffix)].decode(errors="ignore")
        return cls(kept + suffix, marker, role, made_by)


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextlib.contextmanager
def maintenance_session(
    psql: str, env: Mapping[str, str], what: str, *, cleanup: bool = False
) -> Iterator[PsqlSession]:
    """A session on the first maintenance database that exists, for ``what``."""
    for database in MAINTENANCE_DATABASES:
        with psql_session(psql, env, database, cleanup=cleanup) as session:
            if session.request("SELECT 1;") is not None:
                yield session
                return
            text = session.error_text()
        if f'database "{database}" does not exist' not in text:
            break
    raise OpsError(f"{what} failed: {text}; {connection_hint(text)}")


def run(session: PsqlSession, sql: str, what: str) -> str:
    """The last line ``sql`` printed; an OpsError naming ``what`` if it failed."""
    line = session.request(sql)
    if line is None:
        text = session.error_text()
        raise OpsError(f"{what} failed: {text}; {connection_hint(text)}")
    return line


def maintenance(
    psql: str, env: Mapping[str, str], sql: str, what: str, *, cleanup: bool = False
) -> str:
    """Run ``sql`` over its own maintenance session."""
    with maintenance_session(psql, env, what, cleanup=cleanup) as session:
        return run(session, sql, what)


def drop_leftover(session: PsqlSession, database: MarkedDatabase) -> None:
    """Drop ``database`` if a killed run left it; refuse if it exists without our mark."""
    found = run(
        session,
        "SELECT coalesce((SELECT coalesce(shobj_description(oid, 'pg_database') = "
        f"{literal(database.marker)}, false) FROM pg_database WHERE datname = "
        f"{literal(database.name)})::text, 'absent');",
        f"looking for a {database.role} left by an earlier {database.made_by}",
    )
    if found == "absent":
        return
    if found != "true":
        raise OpsError(
            f"database {database.name!r} exists but was not made by a {database.made_by}; rename "
            f"or drop it by hand, the {database.made_by} uses that name for its {database.role}"
        )
    run(
        session,
        f"DROP DATABASE {ident(database.name)} WITH (FORCE);\nSELECT 'dropped';",
        f"dropping the {database.role} {database.name} left by an earlier {database.made_by}",
    )


@contextlib.contextmanager
def created(
    psql: str,
    env: Mapping[str, str],
    database: MarkedDatabase,
    *,
    drop_after: bool,
    like: str | None = None,
    tablespace: str | None = None,
    leftovers: Sequence[MarkedDatabase] = (),
) -> Iterator[None]:
    """Create ``database`` from template0, ``like`` another database (owner, encoding, locale,
    tablespace) or in ``tablespace``; what a killed run left of it and of ``leftovers`` is
    dropped first. It is dropped if the block fails, and after it when ``drop_after``."""
    what = f"creating the {database.role} {database.name}"
    with maintenance_session(psql, env, what) as session:
        for leftover in (*leftovers, database):
            drop_leftover(session, leftover)
        options = f" TABLESPACE {ident(tablespace)}" if tablespace else ""
        if like is not None:
            options = run(session, LIKE_SQL.format(database=literal(like)), what)
            if options == "absent":
                raise OpsError(f"database {like!r} does not exist; check PGDATABASE")
        run(
            session,
            f"CREATE DATABASE {ident(database.name)} TEMPLATE template0{options};\n"
            f"COMMENT ON DATABASE {ident(database.name)} IS {literal(database.marker)};\n"
            "SELECT 'created';",
            what,
        )
    drop = f"DROP DATABASE IF EXISTS {ident(database.name)} WITH (FORCE);\nSELECT 'dropped';"
    what = f"dropping the {database.role} {database.name}"
    try:
        yield
    except OpsError as exc:
        try:
            maintenance(psql, env, drop, what, cleanup=True)
        except OpsError as leftover:
            raise OpsError(f"{exc} (and {leftover}; the next {database.made_by} drops it)") from exc
        raise
    except BaseException:
        with contextlib.suppress(OpsError):
            maintenance(psql, env, drop, what, cleanup=True)
        raise
    if drop_after:
        maintenance(psql, env, drop, what, cleanup=True)

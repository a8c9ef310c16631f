"""Helpers for the astats_ops tests: the CLI as a subprocess, folder and database snapshots."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.ci import in_ci
from tests.support.postgres import PostgresCluster

REPO_ROOT = Path(__file__).resolve().parents[2]

SEED_SQL = """
DO $reset$
DECLARE
    schema_name name;
BEGIN
    FOR schema_name IN
        SELECT nspname FROM pg_namespace
        WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
END
$reset$;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
COMMENT ON SCHEMA public IS 'standard public schema';
CREATE TABLE public.players (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    rating numeric(6, 1) NOT NULL DEFAULT 1500,
    joined date NOT NULL
);
CREATE INDEX players_rating_idx ON public.players (rating);
INSERT INTO public.players (name, rating, joined)
    SELECT 'player-' || g, 1000 + g % 900, DATE '2024-01-01' + g % 365
    FROM generate_series(1, 2000) AS g;
CREATE TABLE public.matches (
    id bigserial PRIMARY KEY,
    home integer NOT NULL REFERENCES public.players (id),
    away integer NOT NULL REFERENCES public.players (id),
    score jsonb NOT NULL
);
INSERT INTO public.matches (home, away, score)
    SELECT 1 + g % 2000, 1 + (g * 7) % 2000, jsonb_build_object('home', g % 5, 'away', g % 3)
    FROM generate_series(1, 5000) AS g;
CREATE VIEW public.top_players AS SELECT name, rating FROM public.players WHERE rating > 1800;
CREATE SCHEMA reporting;
CREATE TABLE reporting.daily (day date PRIMARY KEY, matches integer NOT NULL);
INSERT INTO reporting.daily SELECT DATE '2024-01-01' + g, g FROM generate_series(0, 99) AS g;
CREATE FUNCTION reporting.total() RETURNS bigint LANGUAGE sql
    AS 'SELECT sum(matches) FROM reporting.daily';
"""


def run_cli(
    *args: str | os.PathLike[str],
    env: Mapping[str, str],
    input_text: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m astats_ops ...`` as the operator would run it."""
    full_env = dict(env)
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "astats_ops", *map(str, args)],
        env=full_env,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def directory_state(path: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``path`` (hidden ones too) with its mode and content hash."""
    state = {}
    for item in sorted(path.rglob("*")):
        if item.is_file():
            digest = hashlib.sha256(item.read_bytes()).hexdigest()
            state[str(item.relative_to(path))] = (item.stat().st_mode, digest)
    return state


def strip_dump_noise(text: str) -> list[str]:
    """pg_dump output without comments and the per-run ``\\restrict`` keys."""
    return [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("--") and not line.startswith("\\")
    ]


def database_fingerprint(pg: PostgresCluster) -> tuple[list[str], list[str]]:
    """(schema DDL, sorted data lines) as the superuser's pg_dump sees the database."""
    env = pg.env(user="postgres")
    schema = subprocess.run(
        ["pg_dump", "--schema-only"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = subprocess.run(
        ["pg_dump", "--data-only"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return strip_dump_noise(schema), sorted(strip_dump_noise(data))


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A small tmpfs (needs root), to simulate a full or read-only backup volume."""
    mountpoint = Path(tempfile.mkdtemp(prefix="astats-tmpfs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        mountpoint.rmdir()
        reason = f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        mountpoint.rmdir()


def remount_read_only(mountpoint: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mountpoint)], check=True)


def make_backup_files(dest: Path, stamps: list[str], broken: set[str]) -> None:
    """Backup-shaped files (not real dumps) for retention and offsite tests."""
    for stamp in stamps:
        name = f"astats-{stamp}.dump"
        body = f"dump {stamp}".encode()
        (dest / name).write_bytes(body)
        digest = "0" * 64 if stamp in broken else hashlib.sha256(body).hexdigest()
        (dest / f"{name}.sha256").write_text(f"{digest}  {name}\n")


def grant_createdb(pg: PostgresCluster) -> None:
    """The drill creates its scratch database as the backup role (a superuser in the
    official image; here an ordinary role that may create databases)."""
    pg.psql("ALTER ROLE astats CREATEDB", user="postgres", database="postgres")


def databases(pg: PostgresCluster) -> set[str]:
    return set(pg.psql("SELECT datname FROM pg_database", user="postgres").split())


def schedule_args(dest: Path, status: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "schedule",
        "--dest",
        dest,
        "--interval-minutes",
        "60",
        "--status-file",
        status,
        "--keep-last",
        "2",
        *extra,
    ]

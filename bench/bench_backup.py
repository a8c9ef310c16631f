"""Benchmark: ``astats_ops backup`` and ``restore`` against plain pg_dump and pg_restore.

Starts a throwaway PostgreSQL 15 cluster, fills it with ``pgbench -i -s SCALE``, then times,
alternating which goes first in each round:

* plain ``pg_dump -Fc`` against ``python -m astats_ops backup`` (ratio pg_dump / astats);
* plain single-job ``pg_restore -d`` of the plain dump into an empty database against
  ``python -m astats_ops restore --yes`` of our backup into another empty database
  (ratio pg_restore / astats).

Both targets are >= 1.0 as the median of per-round ratios. The astats commands run with
precompiled bytecode, as the backup image ships it. Before each timed command the server
checkpoints and the kernel writes back its dirty pages, so no command pays for the writes of
the one before it (without this, a restore's ratio swung by a third from round to round).

    ./venv/bin/python bench/bench_backup.py --scale 20 --repetitions 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from astats_ops.archive import restore_jobs  # noqa: E402
from tests.support.postgres import find_binary, postgres_cluster  # noqa: E402

PG_BIN_DIRS = ("/usr/bin", "/usr/lib/postgresql/15/bin")
TARGET = 1.0


def timed(cmd: list[str], env: dict[str, str], settle: Callable[[], None]) -> tuple[float, str]:
    settle()
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return elapsed, result.stdout.strip()


def paired_rounds(
    label: str, plain: Callable[[], float], ours: Callable[[], float], repetitions: int
) -> float:
    """Time both per round, alternating the order; print and return the median ratio."""
    ratios = []
    for round_number in range(1, repetitions + 1):
        if round_number % 2:
            plain_s = plain()
            ours_s = ours()
        else:
            ours_s = ours()
            plain_s = plain()
        ratios.append(plain_s / ours_s)
        print(f"  round {round_number}: plain {plain_s:.2f} s, astats {ours_s:.2f} s")
    median = statistics.median(ratios)
    verdict = "ok" if median >= TARGET else "BELOW TARGET"
    print(f"{label}: median of per-round ratios plain/astats = {median:.3f} ({verdict})")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (~15 MB each)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="where dumps are written (default: tmp)")
    args = parser.parse_args()

    pg_dump = find_binary("pg_dump", PG_BIN_DIRS)
    pg_restore = find_binary("pg_restore", PG_BIN_DIRS)
    pgbench = find_binary("pgbench", PG_BIN_DIRS)
    workdir = Path(tempfile.mkdtemp(prefix="astats-bench-", dir=args.workdir))
    try:
        with postgres_cluster() as pg:
            env = pg.env()
            env["PYTHONPATH"] = str(REPO_ROOT)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
            pg.psql("ALTER ROLE astats CREATEDB", user="postgres", database="postgres")
            started = time.perf_counter()
            subprocess.run(
                [pgbench, "-i", "-q", "-s", str(args.scale)],
                env=env,
                check=True,
                capture_output=True,
            )
            size = pg.psql("SELECT pg_size_pretty(pg_database_size(current_database()))")
            print(
                f"pgbench -i -s {args.scale}: database {size.strip()}, "
                f"{time.perf_counter() - started:.1f} s to generate"
            )
            plain_file = workdir / "plain.dump"
            backups = workdir / "backups"
            backups.mkdir()
            astats = [sys.executable, "-m", "astats_ops"]
            newest: list[Path] = []

            def settle() -> None:
                pg.psql("CHECKPOINT", user="postgres", database="postgres")
                os.sync()

            def run_plain_dump() -> float:
                return timed([pg_dump, "-Fc", "-f", str(plain_file)], env, settle)[0]

            def run_astats_backup() -> float:
                for old in backups.iterdir():
                    old.unlink()
                elapsed, printed = timed([*astats, "backup", "--dest", str(backups)], env, settle)
                newest[:] = [Path(printed)]
                return elapsed

            def fresh_database(name: str) -> dict[str, str]:
                pg.psql(
                    f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}", database="postgres"
                )
                return {**env, "PGDATABASE": name}

            def run_plain_restore() -> float:
                target = fresh_database("bench_plain")
                plain = [pg_restore, "--no-owner", "-d", "bench_plain", str(plain_file)]
                return timed(plain, target, settle)[0]

            def run_astats_restore() -> float:
                target = fresh_database("bench_astats")
                return timed([*astats, "restore", "--yes", str(newest[0])], target, settle)[0]

            run_plain_dump()  # warm-up: loads the tables into the page cache
            run_astats_backup()  # warm-up: compiles astats_ops' bytecode, as the image ships it
            print("backup (pg_dump -Fc vs astats_ops backup):")
            backup_ratio = paired_rounds(
                "backup", run_plain_dump, run_astats_backup, args.repetitions
            )
            print(
                f"dump size: pg_dump -Fc {plain_file.stat().st_size / 1e6:.1f} MB, "
                f"astats backup {newest[0].stat().st_size / 1e6:.1f} MB"
            )
            print(
                "restore (single-job pg_restore vs astats_ops restore: checksum, "
                f"pg_restore --jobs={restore_jobs()} into a staging copy, pgbench_accounts over "
                f"{restore_jobs()} sessions, check, swap):"
            )
            restore_ratio = paired_rounds(
                "restore", run_plain_restore, run_astats_restore, args.repetitions
            )
            rows = pg.psql("SELECT count(*) FROM pgbench_accounts", database="bench_astats")
            print(f"restored {rows.strip()} accounts")
            print(
                f"summary scale {args.scale}: backup ratio {backup_ratio:.3f}, "
                f"restore ratio {restore_ratio:.3f} (targets >= {TARGET})"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

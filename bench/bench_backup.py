"""Benchmark: ``astats_ops backup`` against plain ``pg_dump -Fc`` on the same database.

Starts a throwaway PostgreSQL 15 cluster, fills it with ``pgbench -i -s SCALE``, then times
plain ``pg_dump -Fc`` and ``python -m astats_ops backup`` alternately, and finally times
``python -m astats_ops restore --yes`` of the last backup. Prints the ratio
``pg_dump time / astats backup time`` (the target is >= 0.9).

    ./venv/bin/python bench/bench_backup.py --scale 30 --repetitions 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.postgres import find_binary, postgres_cluster  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return elapsed, result.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=30, help="pgbench scale (~15 MB each)")
    parser.add_argument("--repetitions", type=int, default=6)
    parser.add_argument("--workdir", type=Path, help="where dumps are written (default: tmp)")
    args = parser.parse_args()

    pg_dump = find_binary("pg_dump", ("/usr/bin", "/usr/lib/postgresql/15/bin"))
    pgbench = find_binary("pgbench", ("/usr/bin", "/usr/lib/postgresql/15/bin"))
    workdir = Path(tempfile.mkdtemp(prefix="astats-bench-", dir=args.workdir))
    try:
        with postgres_cluster() as pg:
            env = pg.env()
            env["PYTHONPATH"] = str(REPO_ROOT)
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
            plain_times, astats_times = [], []
            plain_file = workdir / "plain.dump"
            backups = workdir / "backups"
            backups.mkdir()
            last_backup = ""

            def run_plain() -> float:
                elapsed, _ = timed([pg_dump, "-Fc", "-f", str(plain_file)], env)
                plain_file.unlink()
                return elapsed

            def run_astats() -> float:
                nonlocal last_backup
                for old in backups.iterdir():
                    old.unlink()
                elapsed, last_backup = timed(
                    [sys.executable, "-m", "astats_ops", "backup", "--dest", str(backups)], env
                )
                return elapsed

            run_plain()  # warm-up: loads the tables into the page cache
            for round_number in range(1, args.repetitions + 1):
                # Alternate which goes first so neither always benefits from the other's cache.
                if round_number % 2:
                    plain_times.append(run_plain())
                    astats_times.append(run_astats())
                else:
                    astats_times.append(run_astats())
                    plain_times.append(run_plain())
                print(
                    f"round {round_number}: pg_dump -Fc {plain_times[-1]:.2f} s, "
                    f"astats backup {astats_times[-1]:.2f} s"
                )
            dump_size = Path(last_backup).stat().st_size
            print(f"dump size {dump_size / 1e6:.1f} MB")
            rounds = zip(plain_times, astats_times, strict=True)
            paired = statistics.median(plain / ours for plain, ours in rounds)
            print(f"median of per-round ratios pg_dump/astats = {paired:.3f} (target >= 0.9)")
            for label, pick in (("median", statistics.median), ("best", min)):
                plain, ours = pick(plain_times), pick(astats_times)
                print(
                    f"{label}: pg_dump -Fc {plain:.2f} s, astats backup {ours:.2f} s, "
                    f"ratio pg_dump/astats = {plain / ours:.3f} (target >= 0.9)"
                )
            pg.psql("DELETE FROM pgbench_history; DROP TABLE pgbench_branches CASCADE;")
            elapsed, _ = timed(
                [sys.executable, "-m", "astats_ops", "restore", "--yes", last_backup], env
            )
            rows = pg.psql("SELECT count(*) FROM pgbench_accounts").strip()
            print(f"restore of {Path(last_backup).name}: {elapsed:.2f} s ({rows} accounts)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: continuous WAL archiving with pgBackRest against the logical pg_dump path.

For each pgbench scale (``--scales``, default 20 and 100) a throwaway PostgreSQL 15 cluster
runs as the ``postgres`` OS user, durable (fsync, full_page_writes and synchronous_commit on,
as in production) with ``wal_level=replica`` and ``archive_command='pgbackrest archive-push %p'``.
pgBackRest is configured as in the PITR contract, from PGBACKREST_* variables alone (async
archiving with a spool directory, lz4, process-max 2, start-fast), its repository, spool and
lock directories in the run's temp directory. Measured in the same run, each figure against
its baseline:

1. write overhead of archiving: pgbench TPS of a fixed-duration run with ``archive_mode=off``
   and ``archive_mode=on``, alternating (off, on, off, on, ...) after one uncounted warm-up run,
   medians; after each archiving run the archive is drained before the server restarts, so no
   run inherits another's backlog.
   Goal: at most 10 % fewer transactions;
2. a full pgBackRest backup against ``pg_dump -Fc`` of the same data, then (after
   ``--write-seconds`` of pgbench writes) a differential backup against ``pg_dump -Fc`` again;
3. the repository's size for the full backup (pgBackRest's own figure) against the dump's size;
4. restore to latest: ``pgbackrest restore`` of the newest full backup into an empty directory,
   replaying the archived WAL (the writes and the differential backup after it), until the
   started server has left recovery and answers queries, against single-job ``pg_restore -j1``
   of the second dump into a new database of the source cluster (archiving off by then, so it
   adds nothing to the archive). Both rebuilt copies are checked against the source's row
   counts. Goal: physical at least 2x faster at scale 100.

Before each timed command the server checkpoints and the kernel writes back its dirty pages.
Not a test: it reports ratios against the baselines and never asserts.

    ./venv/bin/python bench/bench_pitr.py --scales 20,100 [--tps-rounds 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.postgres import (  # noqa: E402
    OS_USER,
    SERVER_BIN_DIRS,
    PostgresCluster,
    find_binary,
    free_tcp_port,
    postgres_cluster,
)

PG_BIN_DIRS = ("/usr/bin", "/usr/lib/postgresql/15/bin")
STANZA = "astats"
RESTORE_GOAL = 2.0  # physical restore at least 2x faster than pg_restore -j1 (scale 100)
OVERHEAD_GOAL = 0.10  # archiving costs at most 10 % of the transactions
ARCHIVE_COMMAND = "pgbackrest archive-push %p"
COUNT_SQL = (
    "SELECT (SELECT count(*) FROM pgbench_accounts) || ' ' || "
    "(SELECT count(*) FROM pgbench_history) || ' ' || "
    "(SELECT sum(abalance) FROM pgbench_accounts)"
)
console = Console(width=None if sys.stdout.isatty() else 140)


def note(text: str) -> None:
    console.print(f"  {text}", highlight=False)


def as_postgres(cmd: list[str]) -> list[str]:
    """Run as the OS user the clusters run as (this user unless we are root)."""
    return ["runuser", "-u", OS_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def owned_dir(path: Path, mode: int = 0o750) -> Path:
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    os.chmod(path, mode)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def run(cmd: list[str], env: Mapping[str, str], what: str) -> str:
    result = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({result.returncode}): {' '.join(cmd)}\n"
            f"{result.stdout.strip()}\n{result.stderr.strip()}"
        )
    return result.stdout


def timed(cmd: list[str], env: Mapping[str, str], what: str) -> float:
    started = time.perf_counter()
    run(cmd, env, what)
    return time.perf_counter() - started


def mb(size: float) -> str:
    return f"{size / 1e6:,.1f} MB"


@dataclass
class ScaleResult:
    scale: int
    database_bytes: int = 0
    init_s: float = 0.0
    tps_off: list[float] = field(default_factory=list)
    tps_on: list[float] = field(default_factory=list)
    full_s: list[float] = field(default_factory=list)
    dump_full_s: list[float] = field(default_factory=list)
    diff_s: float = 0.0
    dump_diff_s: float = 0.0
    full_repo_bytes: int = 0
    full_db_bytes: int = 0
    diff_repo_bytes: int = 0
    dump_bytes: int = 0
    archive_bytes: int = 0
    physical_s: list[float] = field(default_factory=list)
    physical_restore_cmd_s: list[float] = field(default_factory=list)
    pg_restore_s: list[float] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def median(self, name: str) -> float:
        values: list[float] = getattr(self, name)
        return statistics.median(values) if values else float("nan")

    @property
    def tps_overhead(self) -> float:
        return 1 - self.median("tps_on") / self.median("tps_off")

    @property
    def restore_ratio(self) -> float:
        return self.median("pg_restore_s") / self.median("physical_s")

    def as_json(self) -> dict[str, Any]:
        data = dict(vars(self))
        data.update(
            tps_off_median=self.median("tps_off"),
            tps_on_median=self.median("tps_on"),
            tps_overhead=self.tps_overhead,
            full_backup_median_s=self.median("full_s"),
            dump_full_median_s=self.median("dump_full_s"),
            full_ratio_dump_over_backup=self.median("dump_full_s") / self.median("full_s"),
            diff_ratio_dump_over_backup=self.dump_diff_s / self.diff_s,
            size_ratio_repo_over_dump=self.full_repo_bytes / self.dump_bytes,
            physical_median_s=self.median("physical_s"),
            pg_restore_median_s=self.median("pg_restore_s"),
            restore_ratio_pg_restore_over_physical=self.restore_ratio,
        )
        return data


class Bench:
    """One scale's cluster, pgBackRest environment and measurements."""

    def __init__(self, pg: PostgresCluster, work: Path, args: argparse.Namespace) -> None:
        self.pg = pg
        self.work = work
        self.args = args
        self.pg_dump = find_binary("pg_dump", PG_BIN_DIRS)
        self.pg_restore = find_binary("pg_restore", PG_BIN_DIRS)
        self.pgbench = find_binary("pgbench", PG_BIN_DIRS)
        self.psql_bin = find_binary("psql", PG_BIN_DIRS)
        self.pg_ctl = find_binary("pg_ctl", SERVER_BIN_DIRS)
        self.repo = owned_dir(work / "repo")
        self.pgbackrest_env = {
            "PGBACKREST_STANZA": STANZA,
            "PGBACKREST_REPO1_PATH": str(self.repo),
            "PGBACKREST_REPO1_RETENTION_FULL": "2",
            "PGBACKREST_PG1_PATH": str(pg.data_dir),
            "PGBACKREST_PG1_SOCKET_PATH": pg.host,
            "PGBACKREST_PG1_PORT": str(pg.port),
            "PGBACKREST_PG1_USER": OS_USER,
            "PGBACKREST_ARCHIVE_ASYNC": "y",
            "PGBACKREST_SPOOL_PATH": str(owned_dir(work / "spool")),
            "PGBACKREST_LOCK_PATH": str(owned_dir(work / "lock")),
            "PGBACKREST_LOG_LEVEL_FILE": "off",
            "PGBACKREST_LOG_LEVEL_CONSOLE": "warn",
            "PGBACKREST_COMPRESS_TYPE": "lz4",
            "PGBACKREST_START_FAST": "y",
            "PGBACKREST_PROCESS_MAX": "2",
        }
        # The server's archive_command and restore_command inherit this process's environment
        # (pg_ctl starts it from here); the server restarts before archiving is switched on.
        os.environ.update(self.pgbackrest_env)
        self.env = pg.env()  # the application role, as pgbench and pg_dump run
        self.admin_env = {**pg.env(user=OS_USER, database="postgres"), **self.pgbackrest_env}
        self.dump_a = work / "full-state.dump"
        self.dump_b = work / "diff-state.dump"
        self.archiving: bool | None = None
        self.extra_servers: list[Path] = []
        self.restored_counts = ""
        self.logical_counts = ""

    # --- server control -------------------------------------------------------------------

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self.pg.psql(statement, user=OS_USER, database=database).strip()

    def settle(self) -> None:
        self.sql("CHECKPOINT")
        os.sync()

    def set_archiving(self, on: bool) -> None:
        if self.archiving == on:
            return
        self.sql(f"ALTER SYSTEM SET archive_mode = {'on' if on else 'off'}")
        self.pg.stop("fast")
        self.pg.start()
        self.archiving = on

    def pending_wal(self) -> int:
        status = self.pg.data_dir / "pg_wal" / "archive_status"
        return sum(1 for entry in status.iterdir() if entry.name.endswith(".ready"))

    def drain_archive(self, timeout: float = 600.0) -> None:
        """Wait until every finished WAL segment is in the repository."""
        deadline = time.monotonic() + timeout
        while self.pending_wal():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.pending_wal()} WAL segments still not archived")
            time.sleep(0.2)

    def pgbackrest(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        cmd = as_postgres(["pgbackrest", *args])
        return run(cmd, env or self.admin_env, f"pgbackrest {args[-1]}")

    def info(self) -> dict[str, Any]:
        stanzas: list[dict[str, Any]] = json.loads(self.pgbackrest("--output=json", "info"))
        return stanzas[0]

    def counts(self, env: Mapping[str, str]) -> str:
        return run([self.psql_bin, "-X", "-A", "-t", "-c", COUNT_SQL], env, "counting").strip()

    # --- the phases ------------------------------------------------------------------------

    def populate(self, result: ScaleResult) -> None:
        self.sql("ALTER ROLE astats CREATEDB")
        started = time.perf_counter()
        run([self.pgbench, "-i", "-q", "-s", str(result.scale)], self.env, "pgbench -i")
        result.init_s = time.perf_counter() - started
        result.database_bytes = int(self.sql("SELECT pg_database_size('astats')"))
        note(
            f"pgbench -i -s {result.scale}: database {mb(result.database_bytes)}, "
            f"{result.init_s:.1f} s to generate"
        )
        self.set_archiving(False)
        self.pgbackrest("stanza-create")

    def pgbench_run(self, seconds: int) -> float:
        out = run(
            [
                self.pgbench,
                "-T",
                str(seconds),
                "-c",
                str(self.args.clients),
                "-j",
                str(self.args.threads),
            ],
            self.env,
            "pgbench",
        )
        for line in out.splitlines():
            if line.startswith("tps = "):
                return float(line.split()[2])
        raise RuntimeError(f"no tps in pgbench's output:\n{out}")

    def overhead(self, result: ScaleResult) -> None:
        note(
            f"write overhead: pgbench -T {self.args.tps_seconds} -c {self.args.clients} "
            f"-j {self.args.threads}, archive_mode off/on alternating, "
            f"{self.args.tps_rounds} rounds"
        )
        self.settle()
        warm = self.pgbench_run(self.args.tps_seconds)
        note(f"warm-up (not counted): off {warm:,.0f} tps")
        for round_number in range(1, self.args.tps_rounds + 1):
            line = []
            for on in (False, True):
                self.set_archiving(on)
                self.settle()
                tps = self.pgbench_run(self.args.tps_seconds)
                (result.tps_on if on else result.tps_off).append(tps)
                if on:
                    started = time.perf_counter()
                    self.drain_archive()
                    line.append(
                        f"on {tps:,.0f} tps (archive drained {time.perf_counter() - started:.1f}"
                        " s after)"
                    )
                else:
                    line.append(f"off {tps:,.0f} tps")
            note(f"round {round_number}: " + ", ".join(line))

    def dump(self, target: Path) -> float:
        self.settle()
        return timed([self.pg_dump, "-Fc", "-f", str(target)], self.env, "pg_dump")

    def backup(self, kind: str) -> float:
        self.settle()
        cmd = as_postgres(["pgbackrest", f"--type={kind}", "backup"])
        return timed(cmd, self.admin_env, f"pgbackrest backup --type={kind}")

    def backups(self, result: ScaleResult) -> str:
        self.set_archiving(True)
        self.pgbackrest("check")
        note(
            "full backup (pgbackrest --type=full backup vs pg_dump -Fc), "
            f"{self.args.repetitions} round(s), alternating which goes first:"
        )
        for round_number in range(1, self.args.repetitions + 1):
            if round_number % 2:
                result.full_s.append(self.backup("full"))
                result.dump_full_s.append(self.dump(self.dump_a))
            else:
                result.dump_full_s.append(self.dump(self.dump_a))
                result.full_s.append(self.backup("full"))
            note(
                f"round {round_number}: pgbackrest full {result.full_s[-1]:.2f} s, "
                f"pg_dump {result.dump_full_s[-1]:.2f} s"
            )
        newest = self.info()["backup"][-1]
        full_label = str(newest["label"])
        result.full_repo_bytes = int(newest["info"]["repository"]["size"])
        result.full_db_bytes = int(newest["info"]["size"])
        result.dump_bytes = self.dump_a.stat().st_size
        note(
            f"full backup {full_label}: repository {mb(result.full_repo_bytes)} for "
            f"{mb(result.full_db_bytes)} of files; pg_dump -Fc {mb(result.dump_bytes)}"
        )
        tps = self.pgbench_run(self.args.write_seconds)
        note(f"writes: pgbench -T {self.args.write_seconds} at {tps:,.0f} tps")
        result.diff_s = self.backup("diff")
        result.dump_diff_s = self.dump(self.dump_b)
        newest = self.info()["backup"][-1]
        result.diff_repo_bytes = int(newest["info"]["repository"]["delta"])
        note(
            f"diff backup: pgbackrest {result.diff_s:.2f} s "
            f"({mb(result.diff_repo_bytes)} in the repository), pg_dump {result.dump_diff_s:.2f} s"
        )
        # Everything written so far is in the archive; then no more writes reach it.
        self.sql("SELECT pg_switch_wal()")
        self.drain_archive()
        result.archive_bytes = sum(
            entry.stat().st_size for entry in (self.repo / "archive").rglob("*") if entry.is_file()
        )
        self.set_archiving(False)
        return full_label

    def physical_restore(self, label: str, target: Path) -> tuple[float, float]:
        """pgbackrest restore + start + end of recovery; (total, restore command) seconds."""
        shutil.rmtree(target, ignore_errors=True)
        owned_dir(target, 0o700)
        socket_dir = owned_dir(target.with_name(target.name + "-socket"), 0o755)
        port = free_tcp_port()
        env = {**self.admin_env, "PGBACKREST_PG1_PATH": str(target)}
        self.settle()
        started = time.perf_counter()
        run(as_postgres(["pgbackrest", f"--set={label}", "restore"]), env, "pgbackrest restore")
        restored = time.perf_counter() - started
        self.extra_servers.append(target)
        options = (
            f"-c port={port} -c unix_socket_directories='{socket_dir}' "
            "-c listen_addresses='' -c archive_mode=off"
        )
        log = target.with_name(target.name + ".log")
        start = [self.pg_ctl, "-D", str(target), "-l", str(log), "-w", "-t", "3600"]
        run(as_postgres([*start, "-o", options, "start"]), env, "starting the restored server")
        there = {"PGHOST": str(socket_dir), "PGPORT": str(port)}
        server_env = {**self.pg.env(), **there}
        admin = {**self.pg.env(user=OS_USER, database="postgres"), **there}
        query = [self.psql_bin, "-X", "-A", "-t", "-c", "SELECT pg_is_in_recovery()"]
        while run(query, admin, "pg_is_in_recovery").strip() != "f":
            time.sleep(0.05)
        total = time.perf_counter() - started
        self.restored_counts = self.counts(server_env)
        self.stop_server(target)
        return total, restored

    def stop_server(self, data_dir: Path, mode: str = "fast") -> None:
        if (data_dir / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                run(
                    as_postgres([self.pg_ctl, "-D", str(data_dir), "-m", mode, "-w", "stop"]),
                    os.environ,
                    "stopping the restored server",
                )
        if data_dir in self.extra_servers:
            self.extra_servers.remove(data_dir)

    def logical_restore(self) -> float:
        self.sql("DROP DATABASE IF EXISTS bench_restore")
        self.sql("CREATE DATABASE bench_restore OWNER astats")
        env = {**self.env, "PGDATABASE": "bench_restore"}
        self.settle()
        elapsed = timed(
            [self.pg_restore, "-j1", "--no-owner", "-d", "bench_restore", str(self.dump_b)],
            env,
            "pg_restore",
        )
        self.logical_counts = self.counts(env)
        return elapsed

    def restores(self, result: ScaleResult, full_label: str) -> None:
        source = self.counts(self.env)
        note(
            f"restore to latest (pgbackrest restore --set={full_label} + archived WAL, start, "
            f"end of recovery vs pg_restore -j1 into a new database), {self.args.repetitions} "
            "round(s), alternating which goes first:"
        )
        target = self.work / "restored"
        for round_number in range(1, self.args.repetitions + 1):
            order = ("physical", "logical") if round_number % 2 else ("logical", "physical")
            for which in order:
                if which == "physical":
                    total, command = self.physical_restore(full_label, target)
                    result.physical_s.append(total)
                    result.physical_restore_cmd_s.append(command)
                else:
                    result.pg_restore_s.append(self.logical_restore())
            note(
                f"round {round_number}: physical {result.physical_s[-1]:.2f} s "
                f"(pgbackrest restore {result.physical_restore_cmd_s[-1]:.2f} s, start and "
                f"recovery {result.physical_s[-1] - result.physical_restore_cmd_s[-1]:.2f} s), "
                f"pg_restore -j1 {result.pg_restore_s[-1]:.2f} s"
            )
        for name, found in (
            ("physical", self.restored_counts),
            ("pg_restore", self.logical_counts),
        ):
            verdict = "matches the source" if found == source else f"DIFFERS from {source}"
            result.checks.append(f"{name}: {found} {verdict}")
            note(f"{name} copy (accounts, history rows, sum of balances): {found} {verdict}")
        shutil.rmtree(target, ignore_errors=True)
        self.sql("DROP DATABASE IF EXISTS bench_restore")

    def close(self) -> None:
        for data_dir in list(self.extra_servers):
            self.stop_server(data_dir, "immediate")


def measure(scale: int, args: argparse.Namespace, root: Path) -> ScaleResult:
    console.rule(f"scale {scale}")
    result = ScaleResult(scale)
    work = owned_dir(root / f"scale-{scale}", 0o755)
    conf = {
        "wal_level": "replica",
        "archive_mode": "off",
        "archive_command": f"'{ARCHIVE_COMMAND}'",
        "archive_timeout": "60",
        "max_wal_size": "1GB",
    }
    with postgres_cluster(durable=True, extra_conf=conf) as pg:
        bench = Bench(pg, work, args)
        try:
            bench.populate(result)
            bench.overhead(result)
            label = bench.backups(result)
            bench.restores(result, label)
        finally:
            bench.close()
    shutil.rmtree(work, ignore_errors=True)
    return result


def report(results: list[ScaleResult], args: argparse.Namespace) -> None:
    table = Table(title="pgBackRest (physical, WAL archive) vs pg_dump/pg_restore (logical)")
    table.add_column("figure")
    for result in results:
        table.add_column(f"scale {result.scale}", justify="right")
    table.add_column("goal")

    def row(label: str, values: list[str], goal: str = "") -> None:
        table.add_row(label, *values, goal)

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT MET"

    row("database size", [mb(r.database_bytes) for r in results])
    row(
        "restore: pgbackrest (restore+recovery)",
        [f"{r.median('physical_s'):.2f} s" for r in results],
    )
    row(
        "  of which pgbackrest restore",
        [f"{r.median('physical_restore_cmd_s'):.2f} s" for r in results],
    )
    row("restore: pg_restore -j1", [f"{r.median('pg_restore_s'):.2f} s" for r in results])
    row(
        "restore ratio pg_restore / physical",
        [
            f"{r.restore_ratio:.2f}x"
            + (f" ({ok(r.restore_ratio >= RESTORE_GOAL)})" if r.scale >= 100 else "")
            for r in results
        ],
        f">= {RESTORE_GOAL:.0f}x at scale 100",
    )
    row("backup: pgbackrest full", [f"{r.median('full_s'):.2f} s" for r in results])
    row("backup: pg_dump -Fc (same data)", [f"{r.median('dump_full_s'):.2f} s" for r in results])
    row(
        "full ratio pg_dump / full",
        [f"{r.median('dump_full_s') / r.median('full_s'):.2f}x" for r in results],
    )
    row("backup: pgbackrest diff", [f"{r.diff_s:.2f} s" for r in results])
    row("backup: pg_dump -Fc (after writes)", [f"{r.dump_diff_s:.2f} s" for r in results])
    row("diff ratio pg_dump / diff", [f"{r.dump_diff_s / r.diff_s:.2f}x" for r in results])
    row("repository: full backup (lz4)", [mb(r.full_repo_bytes) for r in results])
    row("repository: diff backup (its own files)", [mb(r.diff_repo_bytes) for r in results])
    row("repository: WAL archive (whole run)", [mb(r.archive_bytes) for r in results])
    row("dump: pg_dump -Fc", [mb(r.dump_bytes) for r in results])
    row(
        "size ratio full repo / dump", [f"{r.full_repo_bytes / r.dump_bytes:.2f}x" for r in results]
    )
    row(
        "pgbench TPS archive_mode=off (median)",
        [
            f"{r.median('tps_off'):,.0f}  [{', '.join(f'{t:,.0f}' for t in r.tps_off)}]"
            for r in results
        ],
    )
    row(
        "pgbench TPS archive_mode=on (median)",
        [
            f"{r.median('tps_on'):,.0f}  [{', '.join(f'{t:,.0f}' for t in r.tps_on)}]"
            for r in results
        ],
    )
    row(
        "archiving write overhead",
        [f"{r.tps_overhead:+.1%} ({ok(r.tps_overhead <= OVERHEAD_GOAL)})" for r in results],
        f"<= {OVERHEAD_GOAL:.0%} fewer transactions",
    )
    console.print(table)
    console.print(
        f"TPS: pgbench -T {args.tps_seconds} -c {args.clients} -j {args.threads}, "
        f"{args.tps_rounds} alternating rounds; backups and restores: median of "
        f"{args.repetitions} round(s); {os.cpu_count()} CPUs. Restored copies: "
        + "; ".join(f"scale {r.scale}: " + ", ".join(r.checks) for r in results),
        highlight=False,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="20,100", help="pgbench scales, comma-separated")
    parser.add_argument("--tps-seconds", type=int, default=20, help="pgbench -T per TPS run")
    parser.add_argument("--clients", type=int, default=4, help="pgbench -c")
    parser.add_argument("--threads", type=int, default=2, help="pgbench -j")
    parser.add_argument(
        "--tps-rounds", type=int, default=4, help="alternating off/on TPS rounds (>= 2)"
    )
    parser.add_argument(
        "--write-seconds", type=int, default=10, help="pgbench writes between full and diff"
    )
    parser.add_argument(
        "--repetitions", type=int, default=2, help="rounds of full backups and of restores"
    )
    parser.add_argument("--workdir", type=Path, help="where the repository and dumps go")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    scales = [int(part) for part in args.scales.split(",") if part.strip()]
    if shutil.which("pgbackrest") is None:
        raise SystemExit("pgbackrest not found on PATH (apt-get install -y pgbackrest)")

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    root = Path(tempfile.mkdtemp(prefix="astats-bench-pitr-", dir=args.workdir))
    os.chmod(root, 0o755)
    console.print(
        f"{run(['pgbackrest', 'version'], os.environ, 'pgbackrest version').strip()}, "
        f"{run([find_binary('postgres', SERVER_BIN_DIRS), '--version'], os.environ, 'postgres')}",
        highlight=False,
        end="",
    )
    results: list[ScaleResult] = []
    try:
        for scale in scales:
            results.append(measure(scale, args, root))
    except KeyboardInterrupt:
        console.print("interrupted; servers stopped and files removed")
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps([r.as_json() for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

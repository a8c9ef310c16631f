"""The archive's faults with the real pgBackRest and PostgreSQL 15: a full repository disk and an
offsite store that is down. Each fails archiving with pgBackRest's reason in one line, leaves the
backups and the live rows as they were, and once the fault is gone archiving resumes without a
hole in the archive."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3

from astats_ops.pitr import archive_problems, archive_status
from tests.ops.helpers import directory_state, tmpfs
from tests.ops.pitr_faults_support import (
    TlsProxy,
    backups,
    fill,
    free_bytes,
    https_s3,
    missing_segments,
    pgbackrest,
    repo_segments,
    restored_answer,
    segment_names,
)
from tests.ops.pitr_support import (
    Archiving,
    archiving_cluster,
    chown_postgres,
    run_ops,
    wait_for,
)

MIB = 1024 * 1024
KEEP_SQL = """CREATE TABLE public.keep (n int PRIMARY KEY, body text NOT NULL);
INSERT INTO public.keep SELECT g, md5(g::text) FROM generate_series(1, 1000) AS g;"""
KEEP_CHECK = """SELECT count(*) || ' ' || sum(n) || ' ' || md5(string_agg(body, ',' ORDER BY n))
FROM public.keep;"""
# About 20 MiB of WAL that compresses poorly: more than one segment, none of which fits in
# what the filler leaves.
NOISE_SQL = """CREATE TABLE IF NOT EXISTS public.noise (body text);
INSERT INTO public.noise
SELECT md5(random()::text) || md5(random()::text) || md5(random()::text)
FROM generate_series(1, 120000);"""


def assert_one_line_reason(reason: str | None, *fragments: str) -> str:
    assert reason is not None and reason.startswith("ERROR: ["), reason
    assert "\n" not in reason and "\r" not in reason, reason
    for fragment in fragments:
        assert fragment in reason, reason
    return reason


def full_backup(env: dict[str, str], *args: str) -> dict[str, object]:
    made = pgbackrest(["backup", "--type=full", *args], env)
    assert made.returncode == 0, made.stderr
    (row,) = backups(env)
    return row


def test_a_full_repository_disk_fails_archiving_and_resumes_without_a_gap() -> None:
    # 64 MiB holds the stanza, a full backup of the small cluster and its WAL (a few MiB with
    # lz4); a filler then leaves 2 MiB, less than one segment of the noise compresses to.
    with tmpfs("64m") as disk, archiving_cluster() as archiving:
        repo = disk / "repo"
        repo.mkdir(mode=0o750)
        chown_postgres(repo)
        archiving.set_server_env(PGBACKREST_REPO1_PATH=str(repo))
        env = archiving.env(PGBACKREST_REPO1_PATH=str(repo))
        archiving.sql(KEEP_SQL)
        kept = archiving.sql(KEEP_CHECK)
        archiving.wait_archived(archiving.switch_wal())
        backup = full_backup(env)
        label, wal_start = str(backup["label"]), backup["archive"]["start"]  # type: ignore[index]
        repo_backup = directory_state(repo / "backup")

        filler = fill(disk, leave_bytes=2 * MIB)
        archiving.sql(NOISE_SQL)
        stuck = archiving.switch_wal()
        archiving.wait_failed()
        status = archive_status(env, 60)

        reason = assert_one_line_reason(status.reason, "No space left on device")
        assert status.failing and status.pending_segments >= 1
        assert status.repo_free_bytes is not None and status.repo_free_bytes < 4 * MIB
        problems = archive_problems(status, 60)
        assert problems[0].text == f"archiving failing: {reason}"
        # The two segments waiting may already be max_wal_size: that is said too.
        assert {p.kind for p in problems[1:]} <= {"pg-wal-full"}
        shown = run_ops("pitr-status", "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        block = json.loads(shown.stdout)
        assert block["archive"]["failing"] is True
        assert block["problems"][0] == f"archiving failing: {block['archive']['reason']}"
        assert "No space left on device" in block["archive"]["reason"]
        assert block["backups"] == 1 and block["newest_backup"]["label"] == label

        # The backup is listed, whole, and restores; the live database answers, rows intact.
        (still,) = backups(env)
        assert still["label"] == label and not still["error"]
        assert directory_state(repo / "backup") == repo_backup
        verified = pgbackrest(["verify", f"--set={label}"], env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert restored_answer(archiving, label, KEEP_CHECK, env) == kept
        assert archiving.sql(KEEP_CHECK) == kept
        assert archiving.archiver()["last_archived_wal"] < stuck

        freed_at = time.monotonic()
        filler.unlink()
        newest = archiving.switch_wal()
        archiving.wait_archived(newest, timeout=90)
        resumed_after = time.monotonic() - freed_at

        healed = archive_status(env, 60)
        assert not healed.failing and healed.reason is None
        assert healed.last_archived_wal is not None and healed.last_archived_wal >= stuck
        wait_for(lambda: archive_status(env, 60).pending_segments == 0, 30, "pg_wal to drain")
        present = repo_segments(repo)
        assert missing_segments(present, wal_start, newest) == []
        assert not list(repo.rglob("*.tmp")), "no partial file left in the repository"
        assert archiving.sql(KEEP_CHECK) == kept
        (after,) = backups(env)
        assert after["label"] == label and not after["error"]
        assert directory_state(repo / "backup") == repo_backup
        drill = run_ops("pitr-drill", "--dest", archiving.dest, env=env)
        assert drill.returncode == 0, drill.stderr
        print(
            f"\nrepository full: reason {reason!r}; archiving resumed {resumed_after:.1f} s after "
            f"the space came back; {len(present)} segments {min(present)}..{max(present)}, "
            f"free {free_bytes(disk) // MIB} MiB; {drill.stdout.strip()}"
        )


BUCKET = "astats-offsite"
REPO2_PATH = "/astats/pgbackrest"


def repo2_env(port: int, ca: Path) -> dict[str, str]:
    """repo2 on the HTTPS S3 endpoint. pgBackRest gives up on a refused connection after about
    four io-timeouts per request (two requests for archive.info and its copy), and the
    foreground archive-push waits archive-timeout for the async process: both are shortened so
    that PostgreSQL sees the failure within seconds."""
    return {
        "PGBACKREST_REPO2_TYPE": "s3",
        "PGBACKREST_REPO2_PATH": REPO2_PATH,
        "PGBACKREST_REPO2_S3_BUCKET": BUCKET,
        "PGBACKREST_REPO2_S3_ENDPOINT": "localhost",
        "PGBACKREST_REPO2_STORAGE_PORT": str(port),
        "PGBACKREST_REPO2_S3_REGION": "us-east-1",
        "PGBACKREST_REPO2_S3_URI_STYLE": "path",
        "PGBACKREST_REPO2_S3_KEY": "offsitekey",
        "PGBACKREST_REPO2_S3_KEY_SECRET": "offsitesecret",
        "PGBACKREST_REPO2_STORAGE_CA_FILE": str(ca),
        "PGBACKREST_REPO2_RETENTION_FULL": "2",
        "PGBACKREST_IO_TIMEOUT": "2",
        "PGBACKREST_ARCHIVE_TIMEOUT": "20",
    }


def repo2_segments(s3: Any) -> set[str]:
    keys: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{REPO2_PATH.strip('/')}/archive/astats/"
    )
    for page in pages:
        keys += [item["Key"] for item in page.get("Contents", [])]
    return segment_names(keys)


def test_an_offsite_store_down_fails_archiving_naming_repo2_while_repo1_keeps_receiving() -> None:
    with archiving_cluster() as archiving:
        certs = archiving.root / "s3-tls"
        certs.mkdir()
        with https_s3(certs) as (proxy, certificate, plain_endpoint):
            s3 = boto3.client(
                "s3",
                endpoint_url=plain_endpoint,
                region_name="us-east-1",
                aws_access_key_id="offsitekey",
                aws_secret_access_key="offsitesecret",
            )
            s3.create_bucket(Bucket=BUCKET)
            offsite = repo2_env(proxy.port, certificate.ca)
            archiving.set_server_env(**offsite)
            _offsite_down_and_back(archiving, archiving.env(**offsite), proxy, s3)


def _offsite_down_and_back(
    archiving: Archiving, env: dict[str, str], proxy: TlsProxy, s3: Any
) -> None:
    made = pgbackrest(["stanza-create"], env)
    assert made.returncode == 0, made.stderr
    archiving.sql(KEEP_SQL)
    archiving.wait_archived(archiving.switch_wal())
    backup = full_backup(env, "--repo=1")
    label = str(backup["label"])
    repo_backup = directory_state(archiving.repo / "backup")
    assert repo2_segments(s3), "repo2 receives WAL while it is up"

    proxy.stop()
    down_at = time.monotonic()
    archiving.sql("INSERT INTO public.keep VALUES (1001, 'written while the store is down');")
    kept = archiving.sql(KEEP_CHECK)
    first_down = archiving.switch_wal()
    archiving.wait_failed()
    failed_at = time.monotonic()
    # pgBackRest's words are in the spool only from when its async push gives up until
    # PostgreSQL's next try of archive_command clears them: read the status until it has them.
    reads: list[str | None] = []
    status = archive_status(env, 60)
    deadline = time.monotonic() + 60
    while not (status.failing and "repo2" in (status.reason or "")):
        reads.append(status.reason)
        assert time.monotonic() < deadline, f"no status named repo2: {reads[-3:]}"
        time.sleep(0.5)
        status = archive_status(env, 60)

    reason = assert_one_line_reason(status.reason, "repo2", "Connection refused")
    assert status.pending_segments >= 1
    assert archive_problems(status, 60)[0].text == f"archiving failing: {reason}"
    # repo1 still receives every segment; PostgreSQL keeps them until repo2 has them too.
    wait_for(lambda: first_down in repo_segments(archiving.repo), 30, "repo1 to get the WAL")
    second_down = archiving.switch_wal()
    wait_for(lambda: second_down in repo_segments(archiving.repo), 60, "repo1 to get more WAL")
    assert first_down not in repo2_segments(s3)
    assert archiving.sql(KEEP_CHECK) == kept
    assert directory_state(archiving.repo / "backup") == repo_backup

    in_repo2 = repo2_segments(s3)
    proxy.start()
    back_at = time.monotonic()
    newest = archiving.switch_wal()
    archiving.wait_archived(newest, timeout=90)
    resumed_after = time.monotonic() - back_at

    healed = archive_status(env, 60)
    assert not healed.failing and healed.reason is None
    wait_for(lambda: archive_status(env, 60).pending_segments == 0, 30, "pg_wal to drain")
    offsite = repo2_segments(s3)
    assert missing_segments(offsite, min(offsite), max(offsite)) == []
    assert max(offsite) >= newest and first_down in offsite
    info = pgbackrest(["info", "--output=json", "--repo=2"], env)
    assert info.returncode == 0, info.stderr
    (archive,) = json.loads(info.stdout)[0]["archive"]
    assert (archive["min"], archive["max"]) == (min(offsite), max(offsite))
    wal_start = backup["archive"]["start"]  # type: ignore[index]
    assert missing_segments(repo_segments(archiving.repo), wal_start, newest) == []
    (after,) = backups(env)
    assert after["label"] == label and not after["error"]
    assert directory_state(archiving.repo / "backup") == repo_backup
    assert archiving.sql(KEEP_CHECK) == kept
    print(
        f"\noffsite down: reason {reason!r}; PostgreSQL saw the failure "
        f"{failed_at - down_at:.1f} s after the store went down; {len(reads)} status reads "
        f"without pgBackRest's words first ({reads[:1]}); archiving failed for "
        f"{back_at - down_at:.1f} s and resumed {resumed_after:.1f} s after the store came "
        f"back; {len(offsite - in_repo2)} segments reached repo2 then; "
        f"repo2 {min(offsite)}..{max(offsite)}"
    )

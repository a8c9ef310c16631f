"""Offsite copies: uploaded verified and checked, retried after failures, never at the local
copy's expense; the same retention applies remotely."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from astats_ops.catalog import scan
from astats_ops.cli import main
from astats_ops.errors import OpsError
from astats_ops.offsite import OffsiteTarget, make_client, prune_remote, remote_names, sync
from astats_ops.retention import Policy
from tests.ops.helpers import (
    directory_state,
    make_backup_files,
    run_cli,
)
from tests.support.errors import assert_one_line_error
from tests.support.postgres import PostgresCluster, free_tcp_port

STAMPS = [f"2024010{day}T120000Z" for day in range(1, 6)]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")


@pytest.fixture
def s3(aws_env: None) -> Iterator[OffsiteTarget]:
    with mock_aws():
        boto3.client("s3", region_name="eu-central-1").create_bucket(
            Bucket="astats-backups",
            CreateBucketConfiguration={"LocationConstraint": "eu-central-1"},
        )
        yield OffsiteTarget("astats-backups", "prod/db", region="eu-central-1")


def test_sync_uploads_verified_backups_with_their_sha256(s3: OffsiteTarget, dest: Path) -> None:
    make_backup_files(dest, STAMPS, broken={STAMPS[0]})
    client = make_client(s3)

    result = sync(client, s3, scan(dest))

    assert result.ok
    assert sorted(result.uploaded) == [f"astats-{stamp}.dump" for stamp in STAMPS[1:]]
    for stamp in STAMPS[1:]:
        name = f"astats-{stamp}.dump"
        body = (dest / name).read_bytes()
        digest = hashlib.sha256(body).digest()
        head = client.head_object(Bucket=s3.bucket, Key=f"prod/db/{name}", ChecksumMode="ENABLED")
        assert head["Metadata"]["sha256"] == digest.hex()
        assert head["ChecksumSHA256"] == base64.b64encode(digest).decode()
        stored = client.get_object(Bucket=s3.bucket, Key=f"prod/db/{name}")["Body"].read()
        assert stored == body
        sidecar = client.get_object(Bucket=s3.bucket, Key=f"prod/db/{name}.sha256")
        assert sidecar["Body"].read() == (dest / f"{name}.sha256").read_bytes()
    assert f"astats-{STAMPS[0]}.dump" not in remote_names(client, s3)
    assert sync(client, s3, scan(dest)).uploaded == []


def test_a_copy_without_its_sidecar_is_uploaded_again(s3: OffsiteTarget, dest: Path) -> None:
    make_backup_files(dest, STAMPS[:1], broken=set())
    client = make_client(s3)
    name = f"astats-{STAMPS[0]}.dump"
    client.put_object(Bucket=s3.bucket, Key=f"prod/db/{name}", Body=b"truncated upload")

    assert sync(client, s3, scan(dest)).uploaded == [name]
    stored = client.get_object(Bucket=s3.bucket, Key=f"prod/db/{name}")["Body"].read()
    assert stored == (dest / name).read_bytes()


def test_a_corrupted_transfer_is_rejected(
    s3: OffsiteTarget, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body S3 receives must match the local sha256, or the upload fails."""
    make_backup_files(dest, STAMPS[:1], broken=set())
    client = make_client(s3)
    original_put = client.put_object

    def corrupting_put(**kwargs: object) -> object:
        if str(kwargs["Key"]).endswith(".dump"):
            kwargs["Body"] = b"bits flipped on the way"
        return original_put(**kwargs)

    monkeypatch.setattr(client, "put_object", corrupting_put)
    result = sync(client, s3, scan(dest))
    assert not result.ok
    (message,) = result.failed.values()
    assert "does not match" in message and "uploaded again on the next run" in message
    assert not any(name.endswith(".sha256") for name in remote_names(client, s3))


def test_remote_retention_matches_local_rules(s3: OffsiteTarget, dest: Path) -> None:
    make_backup_files(dest, STAMPS, broken=set())
    client = make_client(s3)
    sync(client, s3, scan(dest))
    policy = Policy(keep_last=2)

    planned = prune_remote(client, s3, policy, dry_run=True)
    assert len(remote_names(client, s3)) == 10
    deleted = prune_remote(client, s3, policy)

    assert sorted(planned) == sorted(deleted) == [f"astats-{s}.dump" for s in STAMPS[:3]]
    assert sorted(remote_names(client, s3)) == sorted(
        name for s in STAMPS[3:] for name in (f"astats-{s}.dump", f"astats-{s}.dump.sha256")
    )
    assert len(list(dest.iterdir())) == 10, "remote pruning must not touch local files"


def test_upload_to_a_missing_bucket_fails_keeps_local_and_succeeds_next_run(
    s3: OffsiteTarget, dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_backup_files(dest, STAMPS[:2], broken=set())
    before = directory_state(dest)
    args = ["upload", "--dest", str(dest), "--s3-bucket", "later-bucket", "--s3-region"]

    assert main([*args, "eu-central-1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NoSuchBucket" in err[0], err
    assert directory_state(dest) == before

    boto3.client("s3", region_name="eu-central-1").create_bucket(
        Bucket="later-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    assert main([*args, "eu-central-1"]) == 0
    assert capsys.readouterr().out.count("uploaded") == 2
    assert directory_state(dest) == before


def test_missing_credentials_are_one_clear_line(
    dest: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    make_backup_files(dest, STAMPS[:1], broken=set())
    endpoint = f"http://127.0.0.1:{free_tcp_port()}"
    code = main(["upload", "--dest", str(dest), "--s3-bucket", "b", "--s3-endpoint-url", endpoint])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "AWS_SHARED_CREDENTIALS_FILE" in err[0], err


def test_backup_cli_with_s3_endpoint_and_credentials_file(
    seeded: PostgresCluster, dest: Path, moto_server: str, tmp_path: Path
) -> None:
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = backupkey\naws_secret_access_key = backupsecret\n"
    )
    env = seeded.env()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        env.pop(name, None)
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-config")
    s3_args = ["--s3-bucket", "offsite", "--s3-prefix", "astats", "--s3-region", "us-east-1"]
    unreachable = f"http://127.0.0.1:{free_tcp_port()}"

    failed = run_cli("backup", "--dest", dest, *s3_args, "--s3-endpoint-url", unreachable, env=env)

    assert_one_line_error(failed, "127.0.0.1")
    local = scan(dest)
    assert len(local) == 1 and local[0].verified, "the local backup survives a failed upload"
    assert failed.stdout.strip() == str(local[0].path)

    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="backupkey",
        aws_secret_access_key="backupsecret",
    )
    client.create_bucket(Bucket="offsite")
    retried = run_cli("upload", "--dest", dest, *s3_args, "--s3-endpoint-url", moto_server, env=env)
    assert retried.returncode == 0, retried.stderr
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="offsite")["Contents"]}
    name = local[0].name
    assert keys == {f"astats/{name}", f"astats/{name}.sha256", f"astats/{name}.counts.json"}

    second = run_cli("backup", "--dest", dest, *s3_args, "--s3-endpoint-url", moto_server, env=env)
    assert second.returncode == 0, second.stderr
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="offsite")["Contents"]}
    assert {f"astats/{b.name}" for b in scan(dest)} <= keys
    assert len(keys) == 3 * len(scan(dest))


def test_sync_refuses_unverified_upload_call(s3: OffsiteTarget, dest: Path) -> None:
    from astats_ops.offsite import upload

    make_backup_files(dest, STAMPS[:1], broken=set())
    backup = scan(dest)[0]
    backup.checksum_path.unlink()
    with pytest.raises(OpsError, match="unverified"):
        upload(make_client(s3), s3, backup)


def add_counts(dest: Path, stamp: str) -> Path:
    counts = dest / f"astats-{stamp}.dump.counts.json"
    counts.write_text(f'{{"version": 1, "dump": "astats-{stamp}.dump", "tables": []}}\n')
    return counts


def test_row_counts_go_offsite_with_their_dump_and_are_pruned_with_it(
    s3: OffsiteTarget, dest: Path
) -> None:
    make_backup_files(dest, STAMPS[:3], broken=set())
    counts = [add_counts(dest, stamp) for stamp in STAMPS[:2]]
    client = make_client(s3)

    assert sync(client, s3, scan(dest)).ok

    for local in counts:
        stored = client.get_object(Bucket=s3.bucket, Key=f"prod/db/{local.name}")["Body"].read()
        assert stored == local.read_bytes()
    assert f"astats-{STAMPS[2]}.dump.counts.json" not in remote_names(client, s3)
    prune_remote(client, s3, Policy(keep_last=1))
    assert sorted(remote_names(client, s3)) == [
        f"astats-{STAMPS[2]}.dump",
        f"astats-{STAMPS[2]}.dump.sha256",
    ]


def test_a_complete_copy_uploaded_without_its_counts_gets_them_and_nothing_else(
    s3: OffsiteTarget, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_backup_files(dest, STAMPS[:1], broken=set())
    client = make_client(s3)
    assert sync(client, s3, scan(dest)).uploaded == [f"astats-{STAMPS[0]}.dump"]
    counts = add_counts(dest, STAMPS[0])
    put_keys: list[str] = []
    original_put = client.put_object

    def recording_put(**kwargs: object) -> object:
        put_keys.append(str(kwargs["Key"]))
        return original_put(**kwargs)

    monkeypatch.setattr(client, "put_object", recording_put)
    result = sync(client, s3, scan(dest))

    assert result.ok and result.uploaded == []
    assert result.already_present == [f"astats-{STAMPS[0]}.dump"]
    assert put_keys == [f"prod/db/{counts.name}"]
    stored = client.get_object(Bucket=s3.bucket, Key=f"prod/db/{counts.name}")["Body"].read()
    assert stored == counts.read_bytes()

"""Offsite copies in S3: upload verified backups, check them, apply retention remotely.

Credentials come only from boto3's standard sources (environment, AWS_SHARED_CREDENTIALS_FILE,
instance roles...). Each dump is uploaded with ``ChecksumSHA256`` (S3 rejects a body that does
not match) and its hex digest as ``x-amz-meta-sha256``, then checked with ``head_object``.
The ``.counts.json`` row counts go with it (a restore drill of a downloaded copy compares
against them), and the ``.sha256`` sidecar is uploaded last and marks the remote copy as
complete: a dump without its sidecar is re-uploaded on the next run, and a complete copy
without its counts gets them. Nothing here ever deletes or changes a local file.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from astats_ops.catalog import (
    CHECKSUM_SUFFIX,
    COUNTS_SUFFIX,
    BackupFile,
    counts_path,
    parse_backup_name,
    read_checksum,
)
from astats_ops.errors import OpsError
from astats_ops.retention import Plan, Policy, Snapshot, plan

S3Client = Any

SINGLE_PUT_LIMIT = 5 * 1024**3


@dataclass(frozen=True)
class OffsiteTarget:
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None

    def key(self, name: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{name}" if prefix else name

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix.strip('/')}{where}"


@dataclass
class SyncResult:
    uploaded: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def make_client(settings: OffsiteTarget) -> S3Client:
    import boto3
    from botocore.config import Config

    settings_kwargs: dict[str, Any] = {
        "connect_timeout": 10,
        "read_timeout": 120,
        "retries": {"max_attempts": 3, "mode": "standard"},
    }
    try:
        # botocore >= 1.36 adds CRC checksums by default, which some S3-compatible stores reject.
        config = Config(
            **settings_kwargs,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    except TypeError:
        config = Config(**settings_kwargs)
    return boto3.client(
        "s3", region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
    )


def _describe_error(exc: Exception) -> str:
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return f"{exc}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_SHARED_CREDENTIALS_FILE"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
    return str(exc)


def _storage_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, OSError)


def remote_names(client: S3Client, settings: OffsiteTarget) -> set[str]:
    """Object names (without the prefix) stored under the prefix."""
    prefix = settings.key("")
    names: set[str] = set()
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=settings.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key: str = item["Key"]
                names.add(key[len(prefix) :])
    except _storage_errors() as exc:
        raise OpsError(f"listing {settings.describe()} failed: {_describe_error(exc)}") from exc
    return names


def sync(client: S3Client, settings: OffsiteTarget, backups: Iterable[BackupFile]) -> SyncResult:
    """Upload every verified local backup that has no complete remote copy yet."""
    present = remote_names(client, settings)
    result = SyncResult()
    for backup in backups:
        if not backup.verified:
            continue
        complete = backup.name in present and backup.name + CHECKSUM_SUFFIX in present
        try:
            if not complete:
                upload(client, settings, backup)
            elif backup.name + COUNTS_SUFFIX not in present:
                _put_counts(client, settings, backup)
        except OpsError as exc:
            result.failed[backup.name] = str(exc)
            continue
        (result.already_present if complete else result.uploaded).append(backup.name)
    return result


def upload(client: S3Client, settings: OffsiteTarget, backup: BackupFile) -> None:
    digest = read_checksum(backup.path)
    if digest is None:
        raise OpsError(f"{backup.name} has no checksum; not uploading an unverified backup")
    key = settings.key(backup.name)
    metadata = {"sha256": digest}
    try:
        if backup.size <= SINGLE_PUT_LIMIT:
            with backup.path.open("rb") as body:
                client.put_object(
                    Bucket=settings.bucket,
                    Key=key,
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode(),
                    Metadata=metadata,
                )
        else:
            client.upload_file(
                str(backup.path),
                settings.bucket,
                key,
                ExtraArgs={"Metadata": metadata, "ChecksumAlgorithm": "SHA256"},
            )
        _check_remote(client, settings, backup, digest)
        _put_counts(client, settings, backup)
        client.put_object(
            Bucket=settings.bucket,
            Key=settings.key(backup.checksum_path.name),
            Body=backup.checksum_path.read_bytes(),
            Metadata=metadata,
        )
    except OpsError:
        raise
    except _storage_errors() as exc:
        raise OpsError(
            f"upload of {backup.name} to {settings.describe()} failed: {_describe_error(exc)}; "
            "the local copy is kept and the upload is retried on the next run"
        ) from exc


def _put_counts(client: S3Client, settings: OffsiteTarget, backup: BackupFile) -> None:
    """Upload the backup's row counts, if it has them (older backups do not)."""
    counts = counts_path(backup.path)
    try:
        body = counts.read_bytes()
    except FileNotFoundError:
        return
    try:
        client.put_object(Bucket=settings.bucket, Key=settings.key(counts.name), Body=body)
    except _storage_errors() as exc:
        raise OpsError(
            f"upload of {counts.name} to {settings.describe()} failed: {_describe_error(exc)}; "
            "the local copy is kept and the upload is retried on the next run"
        ) from exc


def _check_remote(
    client: S3Client, settings: OffsiteTarget, backup: BackupFile, digest: str
) -> None:
    head = client.head_object(
        Bucket=settings.bucket, Key=settings.key(backup.name), ChecksumMode="ENABLED"
    )
    problems = []
    if head.get("ContentLength") != backup.size:
        problems.append(f"size {head.get('ContentLength')} != {backup.size}")
    if head.get("Metadata", {}).get("sha256") != digest:
        problems.append("sha256 metadata missing or different")
    remote_checksum = head.get("ChecksumSHA256")
    expected_checksum = base64.b64encode(bytes.fromhex(digest)).decode()
    if remote_checksum and "-" not in remote_checksum and remote_checksum != expected_checksum:
        problems.append(f"ChecksumSHA256 {remote_checksum} != {expected_checksum}")
    if problems:
        raise OpsError(
            f"uploaded copy of {backup.name} in {settings.describe()} does not match: "
            f"{', '.join(problems)}; it will be uploaded again on the next run"
        )


def remote_plan(client: S3Client, settings: OffsiteTarget, policy: Policy) -> Plan:
    names = remote_names(client, settings)
    snapshots = []
    for name in names:
        parsed = parse_backup_name(name)
        if parsed is not None:
            snapshots.append(Snapshot(name, parsed[1], name + CHECKSUM_SUFFIX in names))
    return plan(snapshots, policy)


def prune_remote(
    client: S3Client, settings: OffsiteTarget, policy: Policy, *, dry_run: bool = False
) -> list[str]:
    """Apply ``policy`` to the remote copies; return the names deleted (or to delete)."""
    doomed = [snapshot.key for snapshot in remote_plan(client, settings, policy).delete]
    if dry_run or not doomed:
        return doomed
    keys = []
    for name in doomed:
        keys.append({"Key": settings.key(name)})
        keys.append({"Key": settings.key(name + CHECKSUM_SUFFIX)})
        keys.append({"Key": settings.key(name + COUNTS_SUFFIX)})
    try:
        for start in range(0, len(keys), 1000):
            response = client.delete_objects(
                Bucket=settings.bucket, Delete={"Objects": keys[start : start + 1000]}
            )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise OpsError(
                    f"deleting old copies from {settings.describe()} failed for "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
    except _storage_errors() as exc:
        raise OpsError(
            f"deleting old copies from {settings.describe()} failed: {_describe_error(exc)}"
        ) from exc
    return doomed

"""The stack's configuration: one validated model built from the `astats` config namespace.

Every non-secret setting lives in `Pulumi.<stack>.yaml`; secrets are read with
`require_secret`/`get_secret` and stay `pulumi.Output` secrets. Any problem is reported as a
`ConfigError` naming the key and the `pulumi config` command that fixes it, before a single
resource is registered.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

NAMESPACE = "astats"

SECRET_KEYS: dict[str, str] = {
    "dbPassword": "the PostgreSQL password of the application role",
    "secretKey": "the backend's SECRET_KEY",
    "backupS3AccessKeyId": "the access key id for offsite backups",
    "backupS3SecretAccessKey": "the secret access key for offsite backups",
    "backupAlertWebhookUrl": "the backup alert webhook, for a URL that carries a token",
    "tlsCertificate": "the TLS certificate chain (PEM) nginx serves when tls.mode is files",
    "tlsPrivateKey": "the TLS certificate's private key (PEM) when tls.mode is files",
}
REQUIRED_SECRETS = ("dbPassword", "secretKey")
OFFSITE_SECRETS = ("backupS3AccessKeyId", "backupS3SecretAccessKey")
ALERT_SECRET = "backupAlertWebhookUrl"
TLS_FILE_SECRETS = ("tlsCertificate", "tlsPrivateKey")

LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING_DIRECTORY = "https://acme-staging-v02.api.letsencrypt.org/directory"

# Locations nginx serves itself: an API prefix equal to one would be a duplicate location,
# which nginx refuses.
NGINX_HEALTH_PATH = "/healthz"
NEXT_STATIC_PATH = "/_next/static/"
NGINX_OWN_LOCATIONS = {
    NGINX_HEALTH_PATH: "nginx's own health check",
    NEXT_STATIC_PATH: "Next.js static assets",
}
# The error type of a rule over several settings (see `_conflict`).
CONFLICT = "settings_conflict"


def _url_path(path: str) -> str:
    # Paths are written into nginx.conf inside quotes: no quote, space or escape gets there.
    if not re.fullmatch(r"/[A-Za-z0-9._~!$&'()*+,;=:@/-]*", path):
        raise ValueError("is not a URL path (one starting with /, without spaces, quotes or %)")
    return path


MemoryMb = Annotated[int, Field(ge=32, le=262_144, description="Memory limit in MB.")]
Cpus = Annotated[float, Field(gt=0, le=64, description="CPU limit in cores.")]
Port = Annotated[int, Field(ge=1, le=65_535)]
UrlPath = Annotated[str, AfterValidator(_url_path)]
Size = Annotated[
    str, Field(pattern=r"^[0-9]+[kmgKMG]?$", description="nginx/docker size: 10m, 512k.")
]
# Processes and threads together: the kernel's pids controller counts both.
PidsLimit = Annotated[
    int,
    Field(ge=32, le=65_536, description="Most processes and threads the container runs at once."),
]


def _unprivileged(user: str) -> str:
    # Numbers, not names: the backup scheduler joins the backend's group by its gid, and a
    # name means nothing outside the image that defines it.
    ids = re.fullmatch(r"([0-9]+):([0-9]+)", user)
    if ids is None:
        raise ValueError("is not uid:gid in numbers, like 10001:10001")
    if int(ids[1]) == 0 or int(ids[2]) == 0:
        raise ValueError("is root's (uid or gid 0); the service runs as an unprivileged user")
    return user


User = Annotated[str, AfterValidator(_unprivileged)]


def _env_text(value: object) -> object:
    """Numbers and booleans become the text a container sees, as in compose's `environment`:
    `pulumi config set --path` stores `4` and `true` typed, not as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    kind = {dict: "an object", list: "a list", type(None): "empty"}.get(type(value), "not text")
    raise PydanticCustomError(
        "env_text",
        f"is {kind}, but an environment value is text, a number or true/false",
    )


# A value for an environment variable or build argument.
EnvText = Annotated[str, BeforeValidator(_env_text)]


def _conflict(template: str, keys: dict[str, str], **values: object) -> PydanticCustomError:
    """A rule over several settings is broken.

    `template` refers to each setting by a placeholder; `keys` maps the placeholder to the
    setting's key below the model that checks the rule. The config loader spells each key out
    in full (`astats:backend.hostPort`), so the operator sees the keys they set; pydantic's own
    text keeps the short form. `values` fill the other placeholders: only what cannot be a
    secret (ports, paths).
    """
    return PydanticCustomError(
        CONFLICT, template, {**keys, **values, "keys": keys, "template": template}
    )


class Settings(BaseModel):
    """Base for every settings block: camelCase keys, unknown keys rejected, immutable."""

    # hide_input_in_errors: a ValidationError's text would otherwise repeat the whole input,
    # secret-looking env values included.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        hide_input_in_errors=True,
    )


class Healthcheck(Settings):
    interval_s: int = Field(10, ge=1, le=3600, description="Seconds between checks.")
    timeout_s: int = Field(5, ge=1, le=3600, description="Seconds one check may take.")
    retries: int = Field(5, ge=1, le=100, description="Failures in a row that mean unhealthy.")
    start_period_s: int = Field(
        10, ge=0, le=3600, description="Grace seconds after start; `pulumi up` waits this too."
    )

    @property
    def budget_s(self) -> int:
        """The longest a container can take to become healthy under this check."""
        return self.start_period_s + self.retries * (self.interval_s + self.timeout_s)


# Traffic moves to a new backend or frontend once it is healthy, and Docker (before 25) checks
# first one interval after start: a short interval is what lets a rollout move on in seconds.
# What one check costs is measured by bench/bench_healthcheck.py.
WEB_HEALTHCHECK = Healthcheck(interval_s=2, timeout_s=3, retries=5, start_period_s=30)


class BuildSettings(Settings):
    context: str = Field(description="Build context, relative to the project directory.")
    dockerfile: str = Field("Dockerfile", description="Dockerfile, relative to the context.")
    target: str | None = Field(None, description="Multi-stage build target.")
    args: dict[str, EnvText] = Field(default_factory=dict, description="Build arguments.")
    platform: str | None = Field(
        None,
        pattern=r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$",
        description="Platform to build for (linux/arm64); default: this machine's.",
    )


class AppImageSettings(Settings):
    """An application service: either a ready image reference or a build."""

    image: str | None = Field(None, description="Image reference to run as is.")
    build: BuildSettings | None = Field(None, description="Build the image from source.")
    memory_mb: MemoryMb = 512
    cpus: Cpus = 1.0
    host_port: Port | None = Field(None, description="Publish directly on the host (debugging).")
    env: dict[str, EnvText] = Field(
        default_factory=dict, description="Extra non-secret env (numbers and booleans as text)."
    )
    healthcheck: Healthcheck = Healthcheck()

    @model_validator(mode="after")
    def _image_or_build(self) -> AppImageSettings:
        keys = {"image": "image", "build": "build"}
        if self.image is not None and self.build is not None:
            raise _conflict(
                "{image} (a reference) and {build} (a context) are both set, but exactly one "
                "of `image` or `build` is wanted; fix: pulumi config rm --path '{build}'",
                keys,
            )
        if self.image is None and self.build is None:
            raise _conflict(
                "neither {image} (a reference) nor {build} (a context) is set, but exactly one "
                "of `image` or `build` is wanted; fix: pulumi config set --path '{image}' <image>",
                keys,
            )
        return self

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if _looks_secret(name):
                raise ValueError(
                    f"{name!r} looks like a secret; secrets belong in `pulumi config set --secret`"
                )
        return env


class BackendSettings(AppImageSettings):
    memory_mb: MemoryMb = 1024
    port: Port = Field(8000, description="Port Uvicorn listens on inside the container.")
    app_module: str = Field("app.main:app", description="The ASGI app Uvicorn serves.")
    health_path: UrlPath = Field("/health", description="Answers 200 when the backend is up.")
    workers: int | None = Field(None, ge=1, le=64, description="Override the derived count.")
    worker_memory_mb: int = Field(256, ge=32, description="Memory budget of one worker.")
    api_prefixes: tuple[UrlPath, ...] = Field(
        ("/api/", "/docs", "/openapi.json", "/health"),
        description="Paths nginx sends to the backend; everything else goes to the frontend.",
    )
    migration_command: tuple[str, ...] = Field(
        ("alembic", "upgrade", "head"),
        min_length=1,
        description="Run in the backend image after the pre-migration backup.",
    )
    log_dir: str = Field("/app/logs", description="Where the backend writes LATEST_LOG.txt.")
    user: User = Field(
        "10001:10001",
        description=(
            "uid:gid the backend and its migration run as: the image's owner of logDir; the "
            "backup scheduler joins the group to rotate the log."
        ),
    )
    pids_limit: PidsLimit = 512
    healthcheck: Healthcheck = WEB_HEALTHCHECK

    @field_validator("api_prefixes")
    @classmethod
    def _routable(cls, prefixes: tuple[str, ...]) -> tuple[str, ...]:
        if not prefixes:
            raise ValueError("at least one API prefix is needed")
        for prefix in prefixes:
            if prefix in NGINX_OWN_LOCATIONS:
                raise ValueError(f"{prefix} collides with {NGINX_OWN_LOCATIONS[prefix]}")
        return prefixes


class FrontendSettings(AppImageSettings):
    port: Port = Field(3000, description="Port Next.js listens on inside the container.")
    health_path: UrlPath = Field("/", description="Answers below 500 when the frontend is up.")
    command: tuple[str, ...] = Field(
        ("node", "server.js"),
        min_length=1,
        description="The server the launcher starts (the image's own CMD does not survive it).",
    )
    static_dir: str = Field(
        "/app/.next/static",
        pattern=r"^/[A-Za-z0-9._/-]*$",
        description="Next.js static files in the image (nginx serves recent releases').",
    )
    keep_asset_releases: int = Field(
        3, ge=1, le=50, description="Releases whose /_next/static/ files nginx keeps serving."
    )
    user: User = Field("1000:1000", description="uid:gid the frontend runs as.")
    pids_limit: PidsLimit = 256
    healthcheck: Healthcheck = WEB_HEALTHCHECK


class DatabaseSettings(Settings):
    image: str = Field(
        "postgres:15-bookworm", description="Official postgres image; also the backup image's base."
    )
    name: str = Field("astats", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Database name.")
    user: str = Field("astats", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="The app's role.")
    memory_mb: MemoryMb = 1024
    cpus: Cpus = 1.0
    shm_size_mb: int = Field(256, ge=64, le=65_536, description="/dev/shm size in MB.")
    # A server process per connection (max_connections is 100 by default) plus the
    # background and parallel workers.
    pids_limit: PidsLimit = 256
    volume_name: str | None = Field(
        None, description="Data volume name; set it to adopt an existing (compose) volume."
    )
    protect_volume: bool = Field(
        True, description="Refuse to delete or replace the data volume (pulumi state unprotect)."
    )
    restored_volume: str | None = Field(
        None,
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}$",
        description=(
            "The volume a point-in-time restore made (astats restore sets it); the server runs "
            "on it and the original data volume is kept."
        ),
    )
    # pg_isready is a small C program: checking every 2 s costs little and lets a rollout move
    # on as soon as the server accepts connections.
    healthcheck: Healthcheck = Healthcheck(interval_s=2, retries=25, start_period_s=30)


class WebSocketSettings(Settings):
    path: UrlPath = Field("/ws/dev-cockpit", description="The dev cockpit's WebSocket location.")
    read_timeout_s: int = Field(
        3600, ge=1, le=604_800, description="Idle seconds before nginx closes a WebSocket."
    )
    send_timeout_s: int = Field(
        3600, ge=1, le=604_800, description="Seconds a WebSocket write to a client may stall."
    )


class NginxSettings(Settings):
    image: str = Field(
        "nginx:1.30", description="nginx image (needs curl and /bin/sh; runs as its uid 101)."
    )
    http_port: Port = Field(8080, description="Host port nginx publishes.")
    bind_address: str = Field("0.0.0.0", description="Host address the port is bound to.")
    memory_mb: MemoryMb = 128
    cpus: Cpus = 0.5
    # `worker_processes auto` starts one worker per CPU of the host, and a reload starts a
    # new set while the old one finishes its requests.
    pids_limit: PidsLimit = 256
    client_max_body_size: Size = Field("10m", description="Largest request body.")
    proxy_read_timeout_s: int = Field(60, ge=1, le=3600, description="Plain HTTP requests.")
    gzip: bool = Field(True, description="Compress text responses.")
    static_cache_days: int = Field(
        365, ge=0, le=3650, description="Cache lifetime of Next.js /_next/static/ assets."
    )
    websocket: WebSocketSettings = WebSocketSettings()
    # curl of nginx's own /healthz: cheap, and the last wait of a rollout.
    healthcheck: Healthcheck = Healthcheck(interval_s=2, retries=5, start_period_s=5)


class LoggingSettings(Settings):
    max_size: Size = Field("10m", description="Rotate a container's json log at this size.")
    max_file: int = Field(5, ge=1, le=100, description="Rotated log files kept per container.")


class S3Settings(Settings):
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="Bucket name.")
    prefix: str = Field("", description="Key prefix, e.g. astats/prod.")
    region: str = Field("us-east-1", description="Bucket region.")
    endpoint_url: str | None = Field(None, description="For S3-compatible stores (MinIO, ...).")


class PitrSettings(Settings):
    """Continuous WAL archiving and physical backups with pgBackRest (point-in-time restore)."""

    enabled: bool = Field(
        True, description="Archive WAL continuously and take physical backups (pgBackRest)."
    )
    archive_timeout_s: int = Field(
        60, ge=10, le=3600, description="Longest an idle database waits to archive its WAL."
    )
    full_every_hours: int = Field(
        168, ge=1, le=8760, description="Hours between full physical backups."
    )
    diff_every_hours: int = Field(
        24, ge=1, le=8760, description="Hours between differential physical backups."
    )
    retention_full: int = Field(
        2, ge=1, le=100, description="Full backups kept (with their WAL) in each repository."
    )
    drill_every_hours: int = Field(
        24, ge=1, le=8760, description="Hours between restore drills of the newest physical backup."
    )
    offsite: bool = Field(
        True, description="With backup.s3 set, archive there too (a second repository; HTTPS)."
    )

    @model_validator(mode="after")
    def _diff_within_full(self) -> PitrSettings:
        if self.diff_every_hours > self.full_every_hours:
            raise _conflict(
                "{diff} ({d}) is longer than {full} ({f}): a differential backup would never "
                "be due; fix: set {diff} to at most {f}",
                {"diff": "diffEveryHours", "full": "fullEveryHours"},
                d=self.diff_every_hours,
                f=self.full_every_hours,
            )
        return self


class AlertSettings(Settings):
    webhook_url: str | None = Field(
        None,
        description=(
            "Gets a JSON POST when a backup, drill or upload fails or backups are overdue; "
            "a URL with a token goes in the secret astats:backupAlertWebhookUrl instead."
        ),
    )

    @field_validator("webhook_url")
    @classmethod
    def _plain_url(cls, url: str | None) -> str | None:
        # The message never repeats the URL: a rejected one may carry a token.
        if url is None:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password or parts.query:
            raise ValueError(
                "carries credentials or a query; keep it out of plain config: "
                f"pulumi config set --secret {NAMESPACE}:{ALERT_SECRET} (it prompts for it)"
            )
        return url


class BackupSettings(Settings):
    enabled: bool = Field(True, description="Run the scheduled backup/maintenance container.")
    interval_minutes: int = Field(360, ge=5, le=10_080, description="Minutes between backups.")
    keep_last: int = Field(7, ge=1, le=1000, description="Newest backups always kept.")
    keep_daily: int = Field(7, ge=0, le=1000, description="Days with one backup kept each.")
    keep_weekly: int = Field(4, ge=0, le=1000, description="ISO weeks with one backup kept each.")
    memory_mb: MemoryMb = 256
    cpus: Cpus = 0.5
    pids_limit: PidsLimit = 128
    volume_name: str | None = Field(None, description="Backups volume name.")
    log_rotate_max_mb: int = Field(
        10, ge=1, le=10_240, description="Rotate the backend's LATEST_LOG.txt at this size."
    )
    log_rotate_keep: int = Field(5, ge=1, le=100, description="Rotated backend logs kept.")
    s3: S3Settings | None = Field(None, description="Offsite copies; needs the S3 secrets.")
    drills: bool = Field(
        True, description="Restore the newest backup into a scratch database to prove it."
    )
    drill_every_minutes: int | None = Field(
        None, ge=5, le=10_080, description="Drill at most this often (unset: after each backup)."
    )
    alerts: AlertSettings = AlertSettings()
    pitr: PitrSettings = PitrSettings()

    @model_validator(mode="after")
    def _offsite_archive_over_https(self) -> BackupSettings:
        # pgBackRest's S3 client speaks HTTPS only.
        endpoint = self.s3.endpoint_url if self.s3 is not None else None
        if (
            self.pitr.enabled
            and self.pitr.offsite
            and endpoint
            and urlsplit(endpoint).scheme != "https"
        ):
            raise _conflict(
                "{endpoint} is not https://: pgBackRest archives to S3 over HTTPS only; "
                "fix: give the store's https:// address, or set {offsite} to false",
                {"endpoint": "s3.endpointUrl", "offsite": "pitr.offsite"},
            )
        return self

    @property
    def archiving(self) -> bool:
        """Continuous archiving runs: the scheduler takes the physical backups it needs."""
        return self.enabled and self.pitr.enabled

    @property
    def offsite_archive(self) -> S3Settings | None:
        """The S3 store WAL and physical backups also go to (pgBackRest's second repository)."""
        return self.s3 if self.archiving and self.pitr.offsite else None


def _domain(name: str) -> str:
    if name.startswith("*."):
        raise ValueError(
            "is a wildcard; HTTP-01 (how certificates are obtained here) cannot validate one: "
            "list each host name instead"
        )
    labels = name.split(".")
    label = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
    if len(name) > 253 or len(labels) < 2 or not all(label.match(part) for part in labels):
        raise ValueError("is not a fully qualified host name in lower case (www.example.org)")
    if re.fullmatch(r"[0-9.]+", name):
        raise ValueError("is an IP address; certificates here are for host names")
    return name


Domain = Annotated[str, AfterValidator(_domain)]


class HstsSettings(Settings):
    """Strict-Transport-Security, sent over HTTPS only."""

    enabled: bool = Field(True, description="Send HSTS while TLS is on.")
    max_age_s: int = Field(
        63_072_000, ge=0, le=63_072_000, description="How long browsers insist on HTTPS (2 y)."
    )
    include_subdomains: bool = Field(False, description="Cover every subdomain too.")
    preload: bool = Field(False, description="Ask to be preloaded into browsers (hard to undo).")

    @model_validator(mode="after")
    def _preload_rules(self) -> HstsSettings:
        if self.preload and (not self.include_subdomains or self.max_age_s < 31_536_000):
            raise _conflict(
                "{preload} needs {subdomains} true and {age} of at least 31536000 (one year); "
                "fix: pulumi config set --path '{subdomains}' true",
                {"preload": "preload", "subdomains": "includeSubdomains", "age": "maxAgeS"},
            )
        return self


class AcmeSettings(Settings):
    """Certificates from an ACME CA (Let's Encrypt by default), HTTP-01 through nginx."""

    email: str | None = Field(
        None,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Contact address the CA warns before expiry (needed for acme).",
    )
    directory_url: str | None = Field(
        None, description="ACME directory; default Let's Encrypt's (staging: see staging)."
    )
    staging: bool = Field(
        False, description="Use Let's Encrypt's staging directory (untrusted test certificates)."
    )
    directory_ca: str | None = Field(
        None,
        description="PEM of a CA to trust for a private ACME directory (not for Let's Encrypt).",
    )
    renew_before_days: int = Field(
        30, ge=1, le=60, description="Renew when the certificate has fewer days left."
    )
    check_interval_minutes: int = Field(
        720, ge=1, le=10_080, description="Minutes between renewal checks."
    )
    retry_min_s: int = Field(
        600, ge=5, le=86_400, description="First wait after a failed attempt; doubles each time."
    )
    retry_max_s: int = Field(
        21_600, ge=60, le=604_800, description="Longest wait between failed attempts."
    )
    image: str = Field(
        "debian:bookworm-slim", description="Base image the ACME client's image is built on."
    )
    memory_mb: MemoryMb = 128
    cpus: Cpus = 0.25
    pids_limit: PidsLimit = 64

    @field_validator("directory_url")
    @classmethod
    def _https_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
            raise ValueError("must be an https:// URL without credentials")
        return url

    @field_validator("directory_ca")
    @classmethod
    def _pem(cls, pem: str | None) -> str | None:
        if pem is not None and "-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError("is not a PEM certificate (-----BEGIN CERTIFICATE-----)")
        return pem

    @model_validator(mode="after")
    def _one_directory(self) -> AcmeSettings:
        if self.staging and self.directory_url is not None:
            raise _conflict(
                "{staging} and {url} are both set; keep one: pulumi config rm --path '{url}'",
                {"staging": "staging", "url": "directoryUrl"},
            )
        if self.retry_max_s < self.retry_min_s:
            raise _conflict(
                "{high} is below {low}; fix: pulumi config set --path '{high}' <seconds>",
                {"high": "retryMaxS", "low": "retryMinS"},
            )
        return self

    @property
    def directory(self) -> str:
        if self.directory_url is not None:
            return self.directory_url
        return LETSENCRYPT_STAGING_DIRECTORY if self.staging else LETSENCRYPT_DIRECTORY


class TlsSettings(Settings):
    """HTTPS at nginx: `off`, certificates by `acme`, or the operator's own `files`."""

    mode: Literal["off", "acme", "files"] = Field(
        "off", description="off (plain HTTP), acme (automatic certificates) or files (your own)."
    )
    https_port: Port = Field(443, description="Host port nginx publishes HTTPS on.")
    domains: list[Domain] | None = Field(
        None, min_length=1, description="Host names the certificate covers (default: publicHost)."
    )
    acme: AcmeSettings = AcmeSettings()
    hsts: HstsSettings = HstsSettings()

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


class PinSettings(Settings):
    """A rollback's images (astats rollback sets them): while set, a plain `pulumi up` runs
    these instead of building, so nothing rolls forward behind the operator's back."""

    release: str | None = Field(None, description="The release rolled back to (its name).")
    backend_image: str | None = Field(None, description="The backend image it runs.")
    frontend_image: str | None = Field(None, description="The frontend image it runs.")


class ReleaseSettings(Settings):
    keep: int = Field(
        5, ge=1, le=100, description="Releases whose images stay on the host for a rollback."
    )
    pin: PinSettings = PinSettings()


class StackSettings(Settings):
    """Every non-secret setting of a stack, as found under `astats:` in Pulumi.<stack>.yaml."""

    public_host: str = Field("localhost", description="Host name in the public URL.")
    database: DatabaseSettings = DatabaseSettings()
    backend: BackendSettings = BackendSettings(
        build=BuildSettings(context="examples/demo-app/backend")
    )
    frontend: FrontendSettings = FrontendSettings(
        build=BuildSettings(context="examples/demo-app/frontend")
    )
    nginx: NginxSettings = NginxSettings()
    logging: LoggingSettings = LoggingSettings()
    backup: BackupSettings = BackupSettings()
    tls: TlsSettings = TlsSettings()
    releases: ReleaseSettings = ReleaseSettings()

    @property
    def tls_domains(self) -> list[str]:
        """The host names the certificate covers: `tls.domains`, else `publicHost`."""
        return list(self.tls.domains or [self.public_host])

    @model_validator(mode="after")
    def _acme_can_issue(self) -> StackSettings:
        if self.tls.mode != "acme":
            return self
        if self.tls.acme.email is None:
            raise _conflict(
                "{mode} is acme but {email} is unset (the CA's expiry warnings go there); "
                "fix: pulumi config set --path '{email}' ops@<your domain>",
                {"mode": "tls.mode", "email": "tls.acme.email"},
            )
        if self.tls.domains is None:
            try:
                _domain(self.public_host)
            except ValueError as error:
                raise _conflict(
                    "{host} {problem}, so it cannot be the certificate's name; "
                    "fix: pulumi config set --path '{domains}[0]' www.<your domain>",
                    {"host": "publicHost", "domains": "tls.domains"},
                    problem=str(error).split(";")[0],
                ) from None
        return self

    @model_validator(mode="after")
    def _host_ports_distinct(self) -> StackSettings:
        published: dict[int, str] = {}
        for key, port in (
            ("nginx.httpPort", self.nginx.http_port),
            ("tls.httpsPort", self.tls.https_port if self.tls.enabled else None),
            ("backend.hostPort", self.backend.host_port),
            ("frontend.hostPort", self.frontend.host_port),
        ):
            if port is None:
                continue
            if port in published:
                raise _conflict(
                    "{first} and {second} are both {port}: give them different ports; "
                    "fix: pulumi config set --path '{second}' <port>",
                    {"first": published[port], "second": key},
                    port=port,
                )
            published[port] = key
        return self

    @model_validator(mode="after")
    def _websocket_not_shadowed(self) -> StackSettings:
        ws = self.nginx.websocket.path
        for prefix in self.backend.api_prefixes:
            if ws.startswith(prefix) and prefix != "/":
                raise _conflict(
                    "{websocket} {path} lies under {prefix} entry {entry}: "
                    "the WebSocket location needs its own prefix; "
                    "fix: pulumi config set --path '{websocket}' /ws/<name>",
                    {"websocket": "nginx.websocket.path", "prefix": "backend.apiPrefixes"},
                    path=ws,
                    entry=prefix,
                )
        return self


class StackSecrets(BaseModel):
    """The stack's secrets, never unwrapped: each is a secret `pulumi.Output`."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    db_password: pulumi.Output[str]
    secret_key: pulumi.Output[str]
    s3_access_key_id: pulumi.Output[str] | None = None
    s3_secret_access_key: pulumi.Output[str] | None = None
    alert_webhook_url: pulumi.Output[str] | None = None
    tls_certificate: pulumi.Output[str] | None = None
    tls_private_key: pulumi.Output[str] | None = None


class StackConfig(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    stack: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    project_dir: str
    settings: StackSettings
    secrets: StackSecrets


class ConfigError(pulumi.RunError):
    """Bad or missing configuration; the message lists every problem and its fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration for namespace '{NAMESPACE}':\n{body}")


def _looks_secret(name: str) -> bool:
    return bool(re.search(r"PASSWORD|SECRET|TOKEN|PRIVATE|CREDENTIAL|API_?KEY", name.upper()))


def _configured_keys() -> dict[str, bool]:
    """Every key set under the namespace, mapped to whether Pulumi holds it as a secret.

    The SDK has no public listing; the language host hands config to the program through
    PULUMI_CONFIG (real runs) or `set_all_config` (mocks), so both are read.
    """
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret = set(runtime_config.get_config_secret_keys_env()) | set(
        runtime_config._SECRET_KEYS.get()
    )
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix) :]: k in secret for k in raw if k.startswith(prefix)}


def _key(path: tuple[str | int, ...]) -> str:
    """A setting's key as `pulumi config set --path` spells it: backend.apiPrefixes[0]."""
    return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")


def _set_command(path: tuple[str | int, ...], example: object = "<value>") -> str:
    key = _key(path)
    if len(path) == 1:
        return f"pulumi config set {NAMESPACE}:{key} {example}"
    return f"pulumi config set --path '{NAMESPACE}:{key}' {example}"


def _decode(value: str) -> Any:
    """Structured values arrive JSON-encoded; scalars as strings pydantic coerces."""
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _safe_to_echo(item: Any) -> bool:
    """Whether an error may repeat the rejected value: a scalar of the wrong type or out of
    range, never what a validator refused (an env map, a URL: they may carry a secret)."""
    if item["type"] == "missing" or item["type"].startswith("value_error"):
        return False
    return isinstance(item.get("input"), int | float | bool | str)


def _conflict_problem(path: tuple[str | int, ...], context: dict[str, Any]) -> str:
    """A `_conflict` error's text with each setting named by its full key."""
    keys = {
        placeholder: f"{NAMESPACE}:{_key((*path, *key.split('.')))}"
        for placeholder, key in context["keys"].items()
    }
    text: str = context["template"].format(**{**context, **keys})
    return text


def _validation_problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        path = tuple(
            p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        if item["type"] == CONFLICT:
            problems.append(_conflict_problem(path, item["ctx"]))
            continue
        key = _key(path) if path else "(stack)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            parent, name = path[:-1], str(path[-1])
            known = _known_fields(parent)
            hint = difflib.get_close_matches(name, known, n=1)
            guess = f" (did you mean '{hint[0]}'?)" if hint else ""
            problems.append(
                f"{NAMESPACE}:{key}: unknown setting{guess}; "
                f"known here: {', '.join(sorted(known))}; "
                f"remove it with: pulumi config rm --path '{NAMESPACE}:{key}'"
            )
            continue
        if item["type"] == "missing":
            fix = _set_command(path)
        elif item["type"].startswith("value_error") and "pulumi config set" in message:
            fix = ""
        else:
            fix = _set_command(path)
        shown = f" (got {item.get('input')!r})" if _safe_to_echo(item) else ""
        line = f"{NAMESPACE}:{key}: {message}{shown}"
        problems.append(f"{line}; fix: {fix}" if fix else line)
    return problems


def _known_fields(path: tuple[str | int, ...]) -> list[str]:
    model: type[BaseModel] = StackSettings
    for part in path:
        if not isinstance(part, str):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        annotation = field.annotation if field else None
        inner = [
            a
            for a in getattr(annotation, "__args__", (annotation,))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not inner:
            return []
        model = inner[0]
    return [f.alias or n for n, f in model.model_fields.items()]


# A secret's value is typed at the prompt or piped in, never put on a command line.
SECRET_INPUT = "(it reads the value from the prompt or stdin)"


def _read_secrets(
    config: pulumi.Config, keys: dict[str, bool], offsite: bool, tls_files: bool
) -> tuple[dict[str, pulumi.Output[str]], list[str]]:
    problems: list[str] = []
    wanted = (
        REQUIRED_SECRETS
        + (OFFSITE_SECRETS if offsite else ())
        + (TLS_FILE_SECRETS if tls_files else ())
    )
    found: dict[str, pulumi.Output[str]] = {}
    for key in wanted:
        fix = f"pulumi config set --secret {NAMESPACE}:{key} {SECRET_INPUT}"
        if key not in keys:
            why = f" ({SECRET_KEYS[key]})"
            need = {
                **dict.fromkeys(OFFSITE_SECRETS, " because backup.s3 is set"),
                **dict.fromkeys(TLS_FILE_SECRETS, " because tls.mode is files"),
            }.get(key, "")
            problems.append(f"{NAMESPACE}:{key}: missing secret{why}{need}; fix: {fix}")
        elif not keys[key]:
            problems.append(
                f"{NAMESPACE}:{key}: stored in plain text in Pulumi.<stack>.yaml; "
                f"re-set it encrypted: {fix}"
            )
        else:
            found[key] = config.require_secret(key)
    if ALERT_SECRET in keys:
        if keys[ALERT_SECRET]:
            found[ALERT_SECRET] = config.require_secret(ALERT_SECRET)
        else:
            problems.append(
                f"{NAMESPACE}:{ALERT_SECRET}: stored in plain text in Pulumi.<stack>.yaml; "
                "re-set it encrypted: "
                f"pulumi config set --secret {NAMESPACE}:{ALERT_SECRET} {SECRET_INPUT}"
            )
    return found, problems


def _missing_build_files(settings: StackSettings, project_dir: str) -> list[str]:
    problems = []
    for service, app in (("backend", settings.backend), ("frontend", settings.frontend)):
        if app.build is None:
            continue
        dockerfile = Path(project_dir) / app.build.context / app.build.dockerfile
        if not dockerfile.is_file():
            key = f"{service}.build.context"
            problems.append(
                f"{NAMESPACE}:{key}: no {app.build.dockerfile} in {app.build.context!r} "
                f"(relative to {project_dir}); fix: {_set_command(tuple(key.split('.')), '<dir>')} "
                f"or use a ready image: {_set_command((service, 'image'), '<image>')}"
            )
    return problems


def load_stack_config(project_dir: str) -> StackConfig:
    """Read and validate the `astats` namespace, or raise one ConfigError listing every fault."""
    config = pulumi.Config(NAMESPACE)
    keys = _configured_keys()
    problems: list[str] = []

    raw: dict[str, Any] = {}
    top_level = _known_fields(())
    for key, is_secret in sorted(keys.items()):
        if key in SECRET_KEYS:
            continue
        if key not in top_level:
            hint = difflib.get_close_matches(key, [*top_level, *SECRET_KEYS], n=1)
            guess = f" (did you mean '{hint[0]}'?)" if hint else ""
            problems.append(
                f"{NAMESPACE}:{key}: unknown setting{guess}; "
                f"remove it with: pulumi config rm {NAMESPACE}:{key}"
            )
            continue
        if is_secret:
            problems.append(
                f"{NAMESPACE}:{key}: is not a secret setting but is stored as one; "
                f"fix: pulumi config set {NAMESPACE}:{key} <value> (without --secret)"
            )
            continue
        value = config.get(key)
        if value is not None:
            raw[key] = _decode(value)

    settings: StackSettings | None = None
    try:
        settings = StackSettings.model_validate(raw)
    except ValidationError as error:
        problems.extend(_validation_problems(error))

    if settings is not None:
        problems.extend(_missing_build_files(settings, project_dir))
    offsite = settings is not None and settings.backup.s3 is not None
    tls_files = settings is not None and settings.tls.mode == "files"
    secrets, secret_problems = _read_secrets(config, keys, offsite, tls_files)
    problems.extend(secret_problems)
    if settings is not None and not tls_files:
        problems.extend(
            f"{NAMESPACE}:{key}: set, but tls.mode is {settings.tls.mode}, so nothing reads it; "
            f"fix: pulumi config set --path '{NAMESPACE}:tls.mode' files, "
            f"or pulumi config rm {NAMESPACE}:{key}"
            for key in TLS_FILE_SECRETS
            if key in keys
        )
    if settings is not None and settings.backup.alerts.webhook_url and ALERT_SECRET in secrets:
        problems.append(
            f"{NAMESPACE}:backup.alerts.webhookUrl and {NAMESPACE}:{ALERT_SECRET} are both set; "
            f"keep one: pulumi config rm --path '{NAMESPACE}:backup.alerts.webhookUrl'"
        )

    if problems or settings is None:
        raise ConfigError(problems)
    try:
        return StackConfig(
            stack=pulumi.get_stack(),
            project_dir=project_dir,
            settings=settings,
            secrets=StackSecrets(
                db_password=secrets["dbPassword"],
                secret_key=secrets["secretKey"],
                s3_access_key_id=secrets.get("backupS3AccessKeyId"),
                s3_secret_access_key=secrets.get("backupS3SecretAccessKey"),
                tls_certificate=secrets.get("tlsCertificate"),
                tls_private_key=secrets.get("tlsPrivateKey"),
                alert_webhook_url=secrets.get(ALERT_SECRET)
                or (
                    pulumi.Output.secret(settings.backup.alerts.webhook_url)
                    if settings.backup.alerts.webhook_url
                    else None
                ),
            ),
        )
    except ValidationError as error:
        raise ConfigError(
            [
                f"stack name {pulumi.get_stack()!r}: {e['msg']}; use lower-case letters, "
                "digits and dashes (pulumi stack rename <name>)"
                for e in error.errors()
            ]
        ) from None

"""``astats status``: one row per container, then disk, volumes and backups; what needs attention.

Memory and CPU come from one stats sample per container (taken in parallel: the engine needs
two readings for a CPU figure); deaths and OOM kills from the engine's event buffer, which holds
its last 256 events, so "since it started" reaches back as far as that buffer does.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from docker.client import DockerClient
from docker.errors import DockerException, NotFound
from docker.models.containers import Container
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from astats_console.archiving import pitr_lines, pitr_reasons
from astats_console.backups import backup_facts
from astats_console.certificates import renewal_text, tls_facts
from astats_console.durations import format_bytes, format_duration, parse_engine_time
from astats_console.engine import is_local_engine, last_failing_check, run_in
from astats_console.errors import ConsoleError
from astats_console.facts import (
    BackupFacts,
    DiskFacts,
    ReleaseImageFacts,
    ServiceFacts,
    StackFacts,
    TlsFacts,
    VolumeFacts,
)
from astats_console.reasons import Thresholds, attention_reasons
from astats_console.releases import layers_bytes, list_releases
from astats_console.stack import STACK_LABEL, Stack


def memory_used(stats: dict[str, Any]) -> int | None:
    """Usage without the reclaimable page cache, as ``docker stats`` counts it."""
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return int(usage) - int(cache) if cache < usage else int(usage)


def cpu_percent(stats: dict[str, Any]) -> float | None:
    """Share of one CPU, in percent, between the sample's two readings (``docker stats``)."""
    now, before = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    try:
        cpu_delta = now["cpu_usage"]["total_usage"] - before["cpu_usage"]["total_usage"]
        system_delta = now["system_cpu_usage"] - before["system_cpu_usage"]
    except (KeyError, TypeError):
        return None
    cpus = now.get("online_cpus") or len(now["cpu_usage"].get("percpu_usage") or []) or 1
    if system_delta <= 0 or cpu_delta < 0:
        return None
    return float(100.0 * cpu_delta / system_delta * cpus)


def service_facts(
    attrs: dict[str, Any],
    events: list[dict[str, Any]],
    stats: dict[str, Any] | None,
    image: str,
) -> ServiceFacts:
    """Facts from one container's inspect data, its past events and a stats sample."""
    state = attrs.get("State") or {}
    deaths = [e for e in events if e.get("Action") == "die"]
    last_death = deaths[-1] if deaths else None
    exit_at: datetime | None
    if last_death is not None:
        code_text = (last_death.get("Actor") or {}).get("Attributes", {}).get("exitCode")
        exit_code: int | None = int(code_text) if str(code_text).isdigit() else None
        exit_at = datetime.fromtimestamp(last_death["timeNano"] / 1e9, UTC)
    else:
        # The engine resets the exit code when it starts the container again: once running,
        # only a die event (if still in the buffer) knows the last one.
        finished = parse_engine_time(state.get("FinishedAt"))
        known = finished is not None and state.get("Status") != "running"
        exit_code = int(state["ExitCode"]) if known else None
        exit_at = finished if known else None
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return ServiceFacts(
        service=str(labels.get("astats.service", "?")),
        container=str(attrs.get("Name", "")).lstrip("/"),
        short_id=str(attrs.get("Id", ""))[:12],
        state=str(state.get("Status", "unknown")),
        health=(state.get("Health") or {}).get("Status"),
        health_output=last_failing_check(state),
        started=parse_engine_time(state.get("StartedAt")),
        restarts=int(attrs.get("RestartCount") or 0),
        exit_code=exit_code,
        exit_at=exit_at,
        oom_killed=bool(state.get("OOMKilled")) or any(e.get("Action") == "oom" for e in events),
        deaths=tuple(datetime.fromtimestamp(e["timeNano"] / 1e9, UTC) for e in deaths),
        memory_used=memory_used(stats) if stats else None,
        memory_limit=int((stats or {}).get("memory_stats", {}).get("limit") or 0)
        or int((attrs.get("HostConfig") or {}).get("Memory") or 0)
        or None,
        cpu_percent=cpu_percent(stats) if stats else None,
        image=image,
    )


def parse_df(output: str) -> tuple[int, int] | None:
    """(total, free) bytes from ``df -Pk`` output."""
    lines = output.strip().splitlines()
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    if len(fields) < 4 or not (fields[1].isdigit() and fields[3].isdigit()):
        return None
    return int(fields[1]) * 1024, int(fields[3]) * 1024


def disk_facts(client: DockerClient, containers: list[Container]) -> DiskFacts | None:
    """Free space of the engine's data root: read here when the engine is local, otherwise with
    ``df`` in a running container whose named volume lives under that root."""
    root = str(client.info().get("DockerRootDir") or "/var/lib/docker")
    if is_local_engine():
        try:
            fs = os.statvfs(root)
        except OSError:
            pass
        else:
            return DiskFacts(root, fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize)
    for container in containers:
        if container.status != "running":
            continue
        for mount in container.attrs.get("Mounts") or []:
            if mount.get("Type") == "volume" and mount.get("Driver") == "local":
                result = run_in(container, ["df", "-Pk", str(mount["Destination"])])
                parsed = parse_df(result.stdout) if result.ok else None
                if parsed is not None:
                    return DiskFacts(root, *parsed)
    return None


def engine_usage(client: DockerClient) -> dict[str, Any]:
    """The engine's ``df``; empty when it is busy with another (it runs one at a time and
    refuses the rest)."""
    try:
        return dict(client.df())
    except DockerException:
        return {}


def release_image_facts(client: DockerClient, stack: Stack) -> ReleaseImageFacts | None:
    """The release images kept for rollbacks (components/files/record-release.sh): how many
    releases, and the space only they hold (layers no running container's image has)."""
    try:
        kept = list_releases(client, stack.name)
        running = [str(c.attrs.get("Image")) for c in stack.containers(running=True)]
        images = [r.backend_marker_id for r in kept] + [
            r.frontend_tag for r in kept if r.frontend_tag
        ]
        own = layers_bytes(client, images, running)
    except (DockerException, ConsoleError):
        return None
    return ReleaseImageFacts(releases=len(kept), own_bytes=own)


def volume_facts(
    client: DockerClient, stack: str, usage: dict[str, Any] | None = None
) -> list[VolumeFacts]:
    """The stack's volumes; sizes unknown when the engine is busy with another ``df``."""
    sizes: dict[str, int] = {}
    for volume in (engine_usage(client) if usage is None else usage).get("Volumes") or []:
        size = (volume.get("UsageData") or {}).get("Size")
        if isinstance(size, int) and size >= 0:
            sizes[str(volume["Name"])] = size
    found = [
        VolumeFacts(
            name=str(volume.name),
            service=str((volume.attrs.get("Labels") or {}).get("astats.service", "?")),
            size=sizes.get(str(volume.name)),
        )
        for volume in client.volumes.list(filters={"label": f"{STACK_LABEL}={stack}"})
    ]
    return sorted(found, key=lambda v: v.name)


def _events(
    client: DockerClient, stack: str, since: datetime, until: datetime
) -> dict[str, list[dict[str, Any]]]:
    by_container: dict[str, list[dict[str, Any]]] = defaultdict(list)
    stream = client.events(
        since=int(since.timestamp()),
        until=int(until.timestamp()) + 1,
        decode=True,
        filters={"type": "container", "label": f"{STACK_LABEL}={stack}", "event": ["die", "oom"]},
    )
    for event in stream:
        by_container[str(event.get("id"))].append(event)
    return by_container


def _stats(container: Container) -> dict[str, Any] | None:
    if container.status != "running":
        return None
    try:
        sample: dict[str, Any] = container.stats(stream=False)
    except (DockerException, NotFound):
        return None
    return sample


def _image_name(client: DockerClient, attrs: dict[str, Any], cache: dict[str, str]) -> str:
    image_id = str(attrs.get("Image", ""))
    if image_id not in cache:
        try:
            tags = client.images.get(image_id).tags
        except DockerException:
            tags = []
        reference = str((attrs.get("Config") or {}).get("Image", ""))
        tag = tags[0] if tags else ("" if reference.startswith("sha256:") else reference)
        short = image_id.removeprefix("sha256:")[:12]
        cache[image_id] = f"{short} {tag}".strip()
    return cache[image_id]


def collect(
    stack: Stack, *, with_backups: bool = True, backups: BackupFacts | None = None
) -> StackFacts:
    containers = stack.require()
    now = datetime.now(UTC)
    oldest = min(parse_engine_time(c.attrs.get("Created")) or now for c in containers)
    events = _events(stack.client, stack.name, oldest, now)
    with ThreadPoolExecutor(max_workers=len(containers)) as pool:
        samples = list(pool.map(_stats, containers))
    images: dict[str, str] = {}
    services = []
    for container, sample in zip(containers, samples, strict=True):
        container.reload()
        services.append(
            service_facts(
                container.attrs,
                events.get(container.id or "", []),
                sample,
                _image_name(stack.client, container.attrs, images),
            )
        )
    services.sort(key=lambda s: (s.service, s.started or now))
    usage = engine_usage(stack.client)
    return StackFacts(
        stack=stack.name,
        now=now,
        services=services,
        disk=disk_facts(stack.client, containers),
        volumes=volume_facts(stack.client, stack.name, usage),
        release_images=release_image_facts(stack.client, stack),
        backups=backup_facts(stack) if with_backups else backups,
        tls=tls_facts(containers),
    )


def _memory(s: ServiceFacts) -> str:
    if s.memory_used is None:
        return "-"
    limit = f" / {format_bytes(s.memory_limit)}" if s.memory_limit else ""
    return format_bytes(s.memory_used) + limit


def _last_exit(s: ServiceFacts, now: datetime) -> Text:
    if s.exit_code is None:
        return Text("-")
    when = f" {format_duration(now - s.exit_at)} ago" if s.exit_at else ""
    oom = " OOM" if s.oom_killed else ""
    return Text(f"{s.exit_code}{oom}{when}", style="red" if s.oom_killed or s.exit_code else "")


def _health(s: ServiceFacts) -> Text:
    if s.health is None:
        return Text("-")
    style = {"healthy": "green", "unhealthy": "bold red", "starting": "yellow"}.get(s.health, "")
    text = Text(s.health, style=style)
    if s.health == "unhealthy" and s.health_output:
        text.append(f": {s.health_output[:60]}", style="red")
    return text


def render(facts: StackFacts, reasons: list[str]) -> Group:
    table = Table(title=f"stack {facts.stack}", title_justify="left", expand=False)
    for column in ("SERVICE", "CONTAINER", "STATE", "HEALTH", "UPTIME", "RESTARTS"):
        table.add_column(column)
    for column in ("LAST EXIT", "MEMORY", "CPU", "IMAGE"):
        table.add_column(column)
    for s in facts.services:
        running = s.state == "running"
        table.add_row(
            s.service,
            s.container,
            Text(s.state, style="green" if running else "bold red"),
            _health(s),
            format_duration(facts.now - s.started) if running and s.started else "-",
            str(s.restarts),
            _last_exit(s, facts.now),
            _memory(s),
            f"{s.cpu_percent:.1f}%" if s.cpu_percent is not None else "-",
            s.image,
        )
    lines = [_disk_line(facts.disk)]
    volumes = ", ".join(
        f"{v.name} {format_bytes(v.size) if v.size is not None else '?'}" for v in facts.volumes
    )
    lines.append(f"volumes: {volumes or 'none labelled for this stack'}")
    if facts.release_images is not None and facts.release_images.releases:
        kept = facts.release_images
        lines.append(
            f"releases kept for rollback: {kept.releases}, "
            f"{format_bytes(kept.own_bytes)} held only by them (astats releases)"
        )
    lines.extend(_backup_lines(facts.backups, facts.now))
    if facts.backups is not None and facts.backups.problem is None:
        lines.extend(pitr_lines(facts.backups.pitr, facts.now))
    summary = [Text(line) for line in lines]
    summary.extend(_tls_lines(facts.tls, facts.now))
    if reasons:
        summary += [Text(f"ATTENTION {reason}", style="bold red") for reason in reasons]
    else:
        summary.append(Text("ok: nothing needs attention", style="green"))
    return Group(table, *summary)


def _disk_line(disk: DiskFacts | None) -> str:
    if disk is None:
        return "disk: unknown (no local data root and no running container with a volume)"
    return (
        f"disk: {format_bytes(disk.free)} free of {format_bytes(disk.total)} "
        f"({disk.used_percent:.0f}% used) where Docker keeps its data ({disk.path})"
    )


def _backup_lines(backups: BackupFacts | None, now: datetime) -> list[str]:
    if backups is None:
        return ["backups: no backup scheduler in this stack (backup.enabled is false)"]
    if backups.problem:
        return [f"backups: {backups.problem}"]
    if backups.newest_created is None:
        newest = "none yet"
    else:
        age = format_duration(now - backups.newest_created)
        newest = f"{backups.newest_name}, {age} old, {backups.newest_verification}"
    lines = [f"newest backup: {newest} ({backups.count} in all)"]
    if backups.drill:
        lines.append(f"last drill: {backups.drill}")
    lines.append(f"scheduler last error: {backups.last_error or 'none'}")
    return lines


def _tls_lines(tls: TlsFacts | None, now: datetime) -> list[Text]:
    if tls is None:
        return [Text("TLS: off", style="dim")]
    cert = tls.certificate
    if tls.problem is not None:
        served = tls.problem
    elif cert is None:
        served = f"not read: {tls.nginx} is not running"
    elif cert.placeholder:
        served = "the self-signed placeholder, until the first certificate is obtained"
    else:
        left = cert.not_after - now
        days = f"{left.days} days left" if left > timedelta(0) else "EXPIRED"
        served = (
            f"{', '.join(cert.names) or 'no DNS names'} issued by {cert.issuer}, "
            f"expires {cert.not_after:%Y-%m-%d %H:%M} UTC ({days})"
        )
    lines = [Text(f"certificate ({tls.mode}): {served}")]
    acme = tls.acme
    if tls.mode == "acme":
        if acme is None:
            client = "no acme container in this stack"
        elif acme.state != "running":
            client = f"not running ({acme.state})"
        else:
            client = acme.problem or renewal_text(acme, now)
        lines.append(Text(f"acme client: {client}"))
    return lines


def stack_reasons(facts: StackFacts, thresholds: Thresholds) -> list[str]:
    """Everything that needs attention: the services, disk, backups and certificates, then WAL
    archiving and physical backups when the scheduler archives."""
    return attention_reasons(facts, thresholds) + pitr_reasons(facts.backups, facts.now)


def run_status(
    stack: Stack,
    thresholds: Thresholds,
    console: Console,
    *,
    as_json: bool,
) -> int:
    facts = collect(stack)
    reasons = stack_reasons(facts, thresholds)
    if as_json:
        console.print_json(json.dumps(facts.to_json(reasons)))
    else:
        console.print(render(facts, reasons))
    return 1 if reasons else 0


BACKUP_REFRESH_S = 60.0


def watch_status(stack: Stack, thresholds: Thresholds, console: Console, interval_s: float) -> int:
    """Redraw every ``interval_s``; the backups (hashed by ``list``) at most once a minute."""
    backups: BackupFacts | None = None
    backups_at = float("-inf")
    code = 0
    try:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                refresh = time.monotonic() - backups_at >= BACKUP_REFRESH_S
                facts = collect(stack, with_backups=refresh, backups=backups)
                if refresh:
                    backups, backups_at = facts.backups, time.monotonic()
                reasons = stack_reasons(facts, thresholds)
                code = 1 if reasons else 0
                live.update(render(facts, reasons), refresh=True)
                time.sleep(interval_s)
    except KeyboardInterrupt:
        return code

"""``astats watch``: the stack's engine events and periodic disk, backup and certificate checks,
as reports. The backup check covers the dumps and, when the scheduler archives WAL, archiving
and the physical backups (archiving.py).

Each report is one line on stdout and, with ``--webhook``, a JSON POST (see webhook.py). The
event stream is re-opened from the last event seen when the connection drops.
"""

from __future__ import annotations

import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from docker.errors import DockerException
from rich.console import Console

from astats_console.backups import backup_facts
from astats_console.certificates import tls_facts
from astats_console.engine import last_failing_check
from astats_console.errors import one_line
from astats_console.reasons import Thresholds
from astats_console.stack import STACK_LABEL, Stack
from astats_console.status import disk_facts
from astats_console.watchrules import Report, Rules, event_time
from astats_console.webhook import Webhook

WATCHED = ("die", "oom", "kill")
RECONNECT_MAX_S = 30.0


def _health_output(stack: Stack, container_id: str) -> str | None:
    try:
        attrs = stack.client.api.inspect_container(container_id)
    except DockerException:
        return None
    return last_failing_check(attrs.get("State") or {})


def _is_watched(event: dict[str, Any]) -> bool:
    action = str(event.get("Action") or "")
    return action in WATCHED or action.startswith("health_status")


def _events(stack: Stack, rules: Rules, out: queue.Queue[Report | str]) -> None:
    since: float | None = None
    delay = 1.0
    while True:
        try:
            stream = stack.client.events(
                decode=True,
                since=int(since) if since is not None else None,
                filters={"type": "container", "label": f"{STACK_LABEL}={stack.name}"},
            )
            for event in stream:
                delay = 1.0
                moment = event_time(event).timestamp()
                if since is not None and moment <= since:
                    continue
                since = moment
                if not _is_watched(event):
                    continue
                output = None
                if str(event.get("Action", "")).endswith("unhealthy"):
                    output = _health_output(stack, str(event.get("id")))
                for report in rules.on_event(event, output):
                    out.put(report)
        except DockerException as exc:
            out.put(f"lost the engine's event stream ({one_line(str(exc))}); retrying")
        time.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_S)
        since = since if since is not None else time.time()


def _checks(stack: Stack, rules: Rules, out: queue.Queue[Report | str], every: timedelta) -> None:
    while True:
        try:
            containers = stack.containers()
            found = rules.on_check(
                disk_facts(stack.client, containers), backup_facts(stack), datetime.now(UTC)
            )
            found += rules.on_certificates(tls_facts(containers), datetime.now(UTC))
        except DockerException as exc:
            out.put(f"disk, backup and certificate check failed: {one_line(str(exc))}")
        else:
            for report in found:
                out.put(report)
        time.sleep(every.total_seconds())


def run_watch(
    stack: Stack,
    thresholds: Thresholds,
    console: Console,
    err: Console,
    *,
    webhook_url: str | None,
    check_every: timedelta,
) -> int:
    containers = stack.require()
    rules = Rules(thresholds)
    out: queue.Queue[Report | str] = queue.Queue()
    webhook = Webhook(webhook_url, lambda text: out.put(text)) if webhook_url else None
    now = datetime.now(UTC)
    for container in containers:
        state = container.attrs.get("State") or {}
        if (state.get("Health") or {}).get("Status") == "unhealthy":
            labels = container.labels
            out.put(
                Report(
                    now,
                    "unhealthy",
                    str(labels.get("astats.service", "?")),
                    container.name or "",
                    f"healthcheck failing: {last_failing_check(state) or '?'}",
                )
            )
    err.print(f"watching stack {stack.name!r} ({len(containers)} containers); Ctrl-C stops")
    for target, args in (
        (_events, (stack, rules, out)),
        (_checks, (stack, rules, out, check_every)),
    ):
        threading.Thread(target=target, args=args, daemon=True).start()
    try:
        while True:
            item = out.get()
            if isinstance(item, str):
                err.print(item, markup=False, highlight=False)
                continue
            console.print(item.line(), markup=False, highlight=False, soft_wrap=True)
            if webhook is not None:
                webhook.send(item.payload(stack.name))
    except KeyboardInterrupt:
        if webhook is not None:
            webhook.flush(timeout_s=3.0)
        return 0

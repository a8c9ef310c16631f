"""The HTTP probe behind the web services' health checks.

Docker runs a check by exec'ing it in the container, and on this engine that alone costs about
85-95 ms of CPU (bench/bench_healthcheck.py: `true` as the check). Starting Python with urllib
on top costs 2.4 times that, Node with fetch 7 times. A bash `/dev/tcp` request costs no more
than the exec itself, so it is the probe wherever the image has bash (Debian-based images such
as python:3.11-slim and node:20-slim do); elsewhere the image's own runtime probes.
"""

from __future__ import annotations

import shlex

READ_TIMEOUT_S = 2


def http_probe(port: int, path: str, *, healthy: str, fallback: list[str]) -> list[str]:
    """A `CMD-SHELL` health check: GET `path` on the container's `port`; healthy when the
    status matches the case pattern `healthy` (`[23]??`). Without bash, `fallback` runs."""
    request = f"GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n"
    probe = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf '{request}' >&3 && "
        f"read -r -t {READ_TIMEOUT_S} _ status _ <&3 && "
        f"case $status in {healthy}) exit 0;; esac; exit 1"
    )
    return [
        "CMD-SHELL",
        f"if command -v bash >/dev/null 2>&1; then exec bash -c {shlex.quote(probe)}; fi; "
        f"exec {shlex.join(fallback)}",
    ]

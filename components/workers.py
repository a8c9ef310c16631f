"""How many Uvicorn workers a backend container runs."""

from __future__ import annotations

import math


def uvicorn_workers(
    *, cpus: float, memory_mb: int, worker_memory_mb: int, override: int | None = None
) -> int:
    """2 x cpus + 1 (Gunicorn's rule of thumb), capped so the workers fit the memory limit.

    An explicit override wins: operators know their app's footprint better than a formula.
    """
    if override is not None:
        return override
    by_cpu = math.floor(2 * cpus) + 1
    by_memory = max(1, memory_mb // worker_memory_mb)
    return max(1, min(by_cpu, by_memory))

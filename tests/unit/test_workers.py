from hypothesis import given
from hypothesis import strategies as st

from components.workers import uvicorn_workers


def test_two_per_cpu_plus_one() -> None:
    assert uvicorn_workers(cpus=1, memory_mb=4096, worker_memory_mb=256) == 3
    assert uvicorn_workers(cpus=2, memory_mb=4096, worker_memory_mb=256) == 5
    assert uvicorn_workers(cpus=0.5, memory_mb=4096, worker_memory_mb=256) == 2


def test_capped_by_the_memory_budget() -> None:
    assert uvicorn_workers(cpus=4, memory_mb=1024, worker_memory_mb=256) == 4
    assert uvicorn_workers(cpus=4, memory_mb=100, worker_memory_mb=256) == 1


def test_override_wins() -> None:
    assert uvicorn_workers(cpus=4, memory_mb=100, worker_memory_mb=256, override=7) == 7


@given(
    cpus=st.floats(min_value=0.01, max_value=64),
    memory_mb=st.integers(min_value=32, max_value=262_144),
    worker_memory_mb=st.integers(min_value=32, max_value=8192),
)
def test_always_at_least_one_worker_and_within_both_limits(
    cpus: float, memory_mb: int, worker_memory_mb: int
) -> None:
    workers = uvicorn_workers(cpus=cpus, memory_mb=memory_mb, worker_memory_mb=worker_memory_mb)
    assert workers >= 1
    assert workers <= int(2 * cpus) + 1
    assert workers == 1 or workers * worker_memory_mb <= memory_mb

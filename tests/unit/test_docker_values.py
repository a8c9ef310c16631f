"""A second `pulumi up` plans nothing only if inputs are spelled as the provider reads them
back (found by the end-to-end run: "1" cpus and a "60s" interval replaced containers on every
`up`). The expected strings are what pulumi-docker 5.1.0 stored for these inputs."""

from __future__ import annotations

import pytest

from components.docker_values import docker_cpus, docker_duration


@pytest.mark.parametrize(
    ("cpus", "read_back"),
    [
        (1.0, "1.0"),
        (2, "2.0"),
        (0.5, "0.5"),
        (1.5, "1.5"),
        (0.25, "0.25"),
        (1.25, "1.25"),
        (0.125, "0.125"),
        (0.05, "0.1"),
        (10, "10."),
    ],
)
def test_cpus_are_written_as_the_provider_reads_them_back(cpus: float, read_back: str) -> None:
    assert docker_cpus(cpus) == read_back


@pytest.mark.parametrize(
    ("seconds", "read_back"),
    [
        (0, "0s"),
        (5, "5s"),
        (59, "59s"),
        (60, "1m0s"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (3725, "1h2m5s"),
    ],
)
def test_durations_are_written_as_go_prints_them(seconds: int, read_back: str) -> None:
    assert docker_duration(seconds) == read_back


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        docker_cpus(0)
    with pytest.raises(ValueError, match="negative"):
        docker_duration(-1)

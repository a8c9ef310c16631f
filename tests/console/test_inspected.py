"""Facts from what the engine reports: inspect data, its event buffer, a stats sample, df."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from astats_console.engine import last_failing_check
from astats_console.status import cpu_percent, memory_used, parse_df, service_facts

STARTED = "2026-11-25T04:07:16.353330485Z"


def inspect(state: dict[str, Any], restarts: int = 0) -> dict[str, Any]:
    return {
        "Id": "f" * 64,
        "Name": "/astats-dev-backend-1",
        "RestartCount": restarts,
        "Config": {"Labels": {"astats.service": "backend"}},
        "HostConfig": {"Memory": 512 * 1024**2},
        "State": {
            "Status": "running",
            "StartedAt": STARTED,
            "FinishedAt": "0001-01-01T00:00:00Z",
            "ExitCode": 0,
            "OOMKilled": False,
            **state,
        },
    }


def event(action: str, seconds: int, **attributes: str) -> dict[str, Any]:
    return {
        "Action": action,
        "id": "f" * 64,
        "Actor": {"ID": "f" * 64, "Attributes": attributes},
        "time": seconds,
        "timeNano": seconds * 10**9,
    }


def test_the_last_exit_and_oom_kill_come_from_the_event_buffer_after_a_restart() -> None:
    # As the engine reports a container its restart policy brought back: exit code reset to 0.
    attrs = inspect({"FinishedAt": "2026-11-25T04:07:15Z"}, restarts=1)
    events = [event("oom", 1_700_000_000), event("die", 1_700_000_000, exitCode="137")]
    facts = service_facts(attrs, events, None, "abc python")
    assert facts.exit_code == 137
    assert facts.exit_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert facts.oom_killed
    assert facts.restarts == 1
    assert facts.deaths == (datetime.fromtimestamp(1_700_000_000, UTC),)
    assert facts.memory_limit == 512 * 1024**2


def test_without_events_the_state_speaks() -> None:
    attrs = inspect(
        {"Status": "exited", "FinishedAt": "2026-11-25T04:08:00Z", "ExitCode": 3, "OOMKilled": True}
    )
    facts = service_facts(attrs, [], None, "abc")
    assert (facts.state, facts.exit_code, facts.oom_killed) == ("exited", 3, True)
    never = service_facts(inspect({}), [], None, "abc")
    assert (never.exit_code, never.exit_at, never.oom_killed) == (None, None, False)
    # Started again, the engine has reset the code: unknown, not a misleading 0.
    again = service_facts(
        inspect({"FinishedAt": "2026-11-25T04:08:00Z"}, restarts=1), [], None, "a"
    )
    assert (again.exit_code, again.exit_at) == (None, None)


def test_the_last_failing_check_output_is_kept() -> None:
    state = {
        "Health": {
            "Status": "unhealthy",
            "Log": [
                {"ExitCode": 1, "Output": "older failure"},
                {"ExitCode": 1, "Output": "urllib.error.HTTPError:\n HTTP Error 500 "},
                {"ExitCode": 0, "Output": ""},
            ],
        }
    }
    assert last_failing_check(state) == "urllib.error.HTTPError: HTTP Error 500"
    assert last_failing_check({"Health": {"Log": [{"ExitCode": 0}]}}) is None
    assert last_failing_check({}) is None


def test_memory_and_cpu_are_counted_as_docker_stats_does() -> None:
    sample = {
        "memory_stats": {"usage": 300, "limit": 1000, "stats": {"inactive_file": 100}},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000},
            "system_cpu_usage": 20_000,
            "online_cpus": 4,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
    }
    assert memory_used(sample) == 200
    assert cpu_percent(sample) == 80.0
    cgroup_v1 = {"memory_stats": {"usage": 300, "stats": {"total_inactive_file": 50}}}
    assert memory_used(cgroup_v1) == 250
    assert cpu_percent({"cpu_stats": {}, "precpu_stats": {}}) is None
    facts = service_facts(inspect({}), [], sample, "abc")
    assert (facts.memory_used, facts.memory_limit, facts.cpu_percent) == (200, 1000, 80.0)


def test_df_output_gives_total_and_free() -> None:
    output = (
        "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
        "/dev/vda        263174212 28318164  68861384      30% /var/lib/postgresql/data\n"
    )
    assert parse_df(output) == (263174212 * 1024, 68861384 * 1024)
    assert parse_df("df: /nowhere: No such file or directory\n") is None

"""``logs`` on a real engine: three containers merged in time order, following across a
replacement, the backend's LATEST_LOG.txt as a source."""

from __future__ import annotations

from tests.console.conftest import Images
from tests.console.helpers import Running, astats
from tests.console.ministack import MiniStack

# Each container prints its lines only when the shared turn file names them, then passes the
# turn on: the only order the lines can have been written in is 1..9.
TAKE_TURNS = (
    'for n in "$@"; do '
    'until [ "$(cat /shared/turn 2>/dev/null)" = "$n" ]; do sleep 0.1; done; '
    'echo "line $n from $(hostname)"; sleep 0.1; echo $((n + 1)) > /shared/turn; '
    "done; sleep 600"
)
LOG_FILE = "/app/logs/LATEST_LOG.txt"


def test_three_containers_merge_in_time_order(ministack: MiniStack, console_images: Images) -> None:
    shared = ministack.volume("turns", "db")
    for service, turns in (("db", "1 4 7"), ("backend", "2 5 8"), ("nginx", "3 6 9")):
        ministack.create(
            service,
            console_images.python,
            ["sh", "-c", TAKE_TURNS, "sh", *turns.split()],
            volumes={shared: "/shared"},
        )
    container = ministack.containers[0]
    container.exec_run(["sh", "-c", "echo 1 > /shared/turn"])
    ministack.wait_for_log(ministack.containers[2], "line 9")

    result = astats(ministack.name, "logs", "--timestamps")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if " line " in line]
    numbers = [int(line.split(" line ")[1].split()[0]) for line in lines]
    assert numbers == list(range(1, 10))
    sources = [line.split("|")[0].strip() for line in lines]
    assert sources == ["db", "backend", "nginx"] * 3

    grepped = astats(ministack.name, "logs", "nginx", "db", "--grep", "line [4-6]")
    assert [line.split("|")[0].strip() for line in grepped.stdout.splitlines()] == ["db", "nginx"]


def test_following_picks_up_a_replacement_and_the_log_file(
    ministack: MiniStack, console_images: Images
) -> None:
    logs = ministack.volume("backend-logs", "backend")
    talk = 'i=0; while true; do i=$((i+1)); echo "$0 says $i"; sleep 0.3; done'
    old = ministack.create(
        "backend", console_images.python, ["sh", "-c", talk, "old"], volumes={logs: "/app/logs"}
    )
    old.exec_run(["sh", "-c", f"echo '2026-11-24 12:00:00,000 INFO started' > {LOG_FILE}"])
    follow = Running(ministack.name, "logs", "backend", "latest-log", "-f", "--tail", "2")
    try:
        follow.wait_for(lambda got: any("latest-log" in line and "started" in line for line in got))
        follow.wait_for(lambda got: any("old says" in line for line in got))
        # A rollout: the replacement starts beside the old one, then the old one goes.
        new = ministack.create(
            "backend", console_images.python, ["sh", "-c", talk, "new"], volumes={logs: "/app/logs"}
        )
        old.remove(force=True)
        follow.wait_for(lambda got: sum("new says" in line for line in got) >= 3)
        new.exec_run(["sh", "-c", f"echo '2026-11-24 12:00:05,000 ERROR boom' >> {LOG_FILE}"])
        lines = follow.wait_for(lambda got: any("ERROR boom" in line for line in got))
        follow.wait_for(lambda got: any("following" in line for line in got), "stderr")
    finally:
        follow.stop()
    assert all(line.startswith(("backend", "latest-log")) for line in lines)
    new_counts = [int(line.rsplit(" ", 1)[1]) for line in lines if "new says" in line]
    assert new_counts[:3] == [1, 2, 3], "the replacement is read from its first line"

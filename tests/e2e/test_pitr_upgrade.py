"""A stack deployed by the release before continuous archiving (the program as of
`BEFORE_ARCHIVING`) turns archiving on through a normal `pulumi up` of this one: the preview
replaces the database container once and keeps its data volume, and afterwards WAL is archived
and a physical backup taken, with the rows written before still there."""

from __future__ import annotations

import io
import json
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from tests.e2e.conftest import free_port, remove_stack_leftovers, write_stack_config
from tests.e2e.engine import REPO, Project, copy_tree, psql, read_events, running, steps
from tests.e2e.images import StandIns

BEFORE_ARCHIVING = "0ca5c39"
"""The last commit of the program without pgBackRest."""


def unpack_release(commit: str, destination: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")


def data_volume(container: str) -> str:
    """The volume mounted at the database container's data directory."""
    return subprocess.run(
        [
            "docker",
            "inspect",
            "-f",
            '{{range .Mounts}}{{if eq .Destination "/var/lib/postgresql/data"}}{{.Name}}'
            "{{end}}{{end}}",
            container,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_an_earlier_stack_turns_archiving_on_with_one_database_restart(
    images: StandIns,
) -> None:
    stack = f"e2e-upg-{secrets.token_hex(3)}"
    scratch = Path(tempfile.mkdtemp(prefix="astats-e2e-upgrade-"))
    root, state = scratch / "project", scratch / "state"
    root.mkdir()
    state.mkdir()
    unpack_release(BEFORE_ARCHIVING, root)
    (root / "venv").symlink_to(REPO / "venv")
    project = Project(root=root, stack=stack, state_dir=state)
    try:
        project.init()
        write_stack_config(project, images, free_port())
        project.set_config("astats:dbPassword", secrets.token_urlsafe(24), secret=True)
        project.set_config("astats:secretKey", secrets.token_urlsafe(32), secret=True)
        project.up()
        psql(stack, "CREATE TABLE kept (n int); INSERT INTO kept SELECT generate_series(1, 500)")
        volume = data_volume(running(stack, "db"))

        # This release's program, the stack's config as it was.
        config = (root / f"Pulumi.{stack}.yaml").read_text()
        for child in root.iterdir():
            if child.name not in ("venv", f"Pulumi.{stack}.yaml"):
                shutil.rmtree(
                    child
                ) if child.is_dir() and not child.is_symlink() else child.unlink()
        (root / "venv").unlink()
        copy_tree(root)
        write_stack_config(project, images, free_port())
        # Keep the earlier port and secrets: only the program changed.
        (root / f"Pulumi.{stack}.yaml").write_text(config)

        log = scratch / "preview.jsonl"
        project.preview("--diff", event_log=log)
        planned = steps(read_events(log))
        assert planned["db"].op == "replace", planned["db"]
        # `steps` keys each step twice (by type and name, and by name alone): one per urn.
        replaced = sorted({s.urn: s.name for s in planned.values() if s.op == "replace"}.values())
        assert replaced.count("db") == 1, replaced
        assert planned["pgdata"].op == "same", planned["pgdata"]
        assert planned["pgbackrest"].op == "create"
        print(f"\nupgrade preview replaces: {', '.join(replaced)}")

        project.up()
        assert psql(stack, "SELECT count(*) FROM kept") == "500"
        db = running(stack, "db")
        still = data_volume(db)
        assert still == volume
        subprocess.run(
            ["docker", "exec", "-u", "postgres", db, "pgbackrest", "check"],
            capture_output=True,
            text=True,
            check=True,
        )
        deadline = time.monotonic() + 300
        while True:
            info = json.loads(
                subprocess.run(
                    ["docker", "exec", "-u", "postgres", db, "pgbackrest", "info", "--output=json"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            if info[0].get("backup"):
                break
            assert time.monotonic() < deadline, "the scheduler took no physical backup"
            time.sleep(3)
        preview = project.preview("--diff", "--expect-no-changes", check=False)
        assert preview.returncode == 0, preview.output[-3000:]
    finally:
        project.destroy(check=False)
        project.remove_stack()
        remove_stack_leftovers(stack)
        shutil.rmtree(scratch, ignore_errors=True)

"""A git checkout of the project's scripts and stack files for the script tests, with the
fake Pulumi CLI (tests/shipped/fake_pulumi.py) and a docker that answers on PATH.

A checkout gets a venv made of links to this repository's (its own pyvenv.cfg and stamp), so
scripts/bootstrap finds it current and never installs anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_pulumi.py")
FILES = (
    "scripts/up",
    "scripts/down",
    "scripts/bootstrap",
    "scripts/pulumi",
    "scripts/pulumi_wrapper.py",
    "scripts/new-stack",
    "scripts/new_stack.py",
    "requirements.txt",
    "requirements-dev.txt",
    "pyproject.toml",
    "Pulumi.yaml",
    "Pulumi.dev.yaml",
    "Pulumi.prod.yaml",
    ".gitignore",
)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def make_origin(tmp_path: Path) -> Path:
    """A bare repository holding one commit of the project's files, as everyone clones it."""
    seed = tmp_path / "seed"
    for name in FILES:
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, seed / name)
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "project")
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(origin))
    return origin


def link_venv(root: Path) -> None:
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy2(REPO / "venv" / "pyvenv.cfg", venv / "pyvenv.cfg")
    (venv / "lib").symlink_to(REPO / "venv" / "lib")
    for program in ("python", "astats"):
        (venv / "bin" / program).symlink_to(REPO / "venv" / "bin" / program)
    digest = subprocess.run(
        "cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1",
        shell=True,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (venv / ".requirements.sha256").write_text(digest)


@dataclass
class Machine:
    """One developer's machine: a clone, a Pulumi home, a PATH with the fake CLI."""

    root: Path
    bin_dir: Path
    home: Path

    @classmethod
    def clone(cls, origin: Path, where: Path, *, with_pulumi: bool = True) -> Machine:
        root = where / "repo"
        where.mkdir(parents=True, exist_ok=True)
        git(where, "clone", "-q", str(origin), str(root))
        link_venv(root)
        bin_dir = where / "bin"
        bin_dir.mkdir()
        docker = bin_dir / "docker"
        docker.write_text("#!/bin/sh\nexit 0\n")
        docker.chmod(0o755)
        if with_pulumi:
            cli = bin_dir / "pulumi"
            cli.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
            cli.chmod(0o755)
        return cls(root=root, bin_dir=bin_dir, home=where / "home")

    @property
    def log(self) -> Path:
        return self.home / "calls.jsonl"

    def env(self, **extra: str) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        return {
            **clean,
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "FAKE_PULUMI_HOME": str(self.home),
            "FAKE_PULUMI_LOG": str(self.log),
            **extra,
        }

    def run(
        self, *argv: str, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """A command typed in a new shell at the checkout's root (no PULUMI_* set)."""
        self.home.mkdir(exist_ok=True)
        return subprocess.run(
            list(argv),
            cwd=self.root,
            env=self.env(**env),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def calls(self) -> list[dict[str, Any]]:
        import json

        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def deployed(self) -> dict[str, Any]:
        """The config the last `pulumi up` ran with (decrypted)."""
        ups = [call for call in self.calls() if call["argv"][:1] == ["up"] and "config" in call]
        assert ups, "no pulumi up ran"
        return dict(ups[-1]["config"])

    def status(self) -> str:
        """What git would commit here: every change to a tracked or an unignored file."""
        return git(self.root, "status", "--porcelain")

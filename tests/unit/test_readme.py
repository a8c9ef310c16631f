"""The config reference in docs/configuration.md is the model's: a new or changed key shows up
there."""

from pathlib import Path

from components.reference import DOCUMENT, with_reference

ROOT = Path(__file__).resolve().parents[2]


def test_the_config_reference_is_current() -> None:
    text = (ROOT / DOCUMENT).read_text()
    assert with_reference(text) == text, "run: venv/bin/python -m components.reference --write"


def test_readme_names_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "scripts/up" in text and "scripts/test" in text

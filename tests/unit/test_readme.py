"""The README's config reference is the model's: a new or changed key shows up there."""

from pathlib import Path

from components.reference import with_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_reference_is_current() -> None:
    text = README.read_text()
    assert with_reference(text) == text, "run: venv/bin/python -m components.reference --write"


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "scripts/up" in text and "scripts/test" in text

"""The config reference table in docs/configuration.md, generated from the model so it cannot
drift."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from components.config import (
    NAMESPACE,
    OFFSITE_SECRETS,
    REQUIRED_SECRETS,
    SECRET_KEYS,
    StackSettings,
)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = typing.get_args(annotation) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " | ".join(names) + " (optional)"
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " \\| ".join(str(choice) for choice in typing.get_args(annotation))
    if origin is not None:
        return {dict: "map", tuple: "list", list: "list"}.get(origin, str(origin))
    return getattr(annotation, "__name__", str(annotation))


Row = tuple[str, str, str, str]


def _rows(model: type[BaseModel], prefix: str, defaults: Any) -> Iterator[Row]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        default = getattr(defaults, name) if defaults is not None else field.default
        nested = _nested_model(field.annotation)
        if nested is not None and default is not None:
            yield from _rows(nested, f"{key}.", default)
            continue
        if nested is not None:
            yield (key, "object (optional)", "unset", field.description or "")
            yield from _rows(nested, f"{key}.", None)
            continue
        if default is PydanticUndefined:
            shown = "required"
        elif isinstance(default, BaseModel):
            shown = json.dumps(default.model_dump(by_alias=True, exclude_none=True))
        elif isinstance(default, tuple):
            shown = json.dumps(list(default))
        else:
            shown = "unset" if default is None else json.dumps(default)
        yield key, _type_name(field.annotation), shown, field.description or ""


def config_reference() -> str:
    """Markdown tables: every setting with its type and default, then every secret."""
    lines = [
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for key, type_name, default, meaning in _rows(StackSettings, f"{NAMESPACE}:", StackSettings()):
        lines.append(f"| `{key}` | {type_name} | `{default}` | {meaning} |")
    lines += ["", "| secret | required | meaning |", "| --- | --- | --- |"]
    for key, meaning in SECRET_KEYS.items():
        if key in REQUIRED_SECRETS:
            required = "yes"
        elif key in OFFSITE_SECRETS:
            required = "when `backup.s3` is set"
        else:
            required = "no"
        lines.append(f"| `{NAMESPACE}:{key}` | {required} | {meaning} |")
    return "\n".join(lines) + "\n"


START = "<!-- config-reference:start -->\n"
END = "<!-- config-reference:end -->"


DOCUMENT = "docs/configuration.md"


def with_reference(document: str) -> str:
    """`document` with the text between the reference markers replaced by the current table."""
    head, rest = document.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}{config_reference()}{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if sys.argv[1:2] == ["--write"]:
        path = Path(sys.argv[2] if len(sys.argv) > 2 else DOCUMENT)
        path.write_text(with_reference(path.read_text()))
    else:
        print(config_reference(), end="")

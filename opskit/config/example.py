"""The example config, written from the schema: descriptions become comments, examples values.

`opskit config example` prints it; configs/opskit.example.yaml is that output (a test checks).
A section without an example of its own is written key by key from its model; a field's example
that is a mapping or a list of mappings (targets, jobs) is written with the comments of the
model it holds, each field described the first time it appears.
"""

from __future__ import annotations

import textwrap
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from opskit.config.schema import Config

WIDTH = 96
HEADER = """\
# opskit configuration, written by `opskit config example` from the schema.
# Read from --config FILE, else $OPSKIT_CONFIG, else /etc/opskit/opskit.yaml, else
# ~/.config/opskit/opskit.yaml. Keys marked (required) must be given where their section is;
# every other key is optional. Unknown keys are errors (typos must not pass silently).
# Check a file, and see it with every default filled in: opskit config check --config FILE
"""
# Values written instead of the field's example, with a comment saying why.
OVERRIDES: dict[tuple[str, ...], tuple[Any, str]] = {
    ("ports", "allow"): (
        [],
        "An allowlist silences findings, so this example starts empty; see "
        "configs/ports-allowlist.example.yaml for entries.",
    ),
}


def generate_example() -> str:
    """Return the example config as YAML text with comments (it validates as it is)."""
    writer = _Writer()
    return HEADER + "\n" + "\n".join(writer.model_lines(Config, None, 0, ())) + "\n"


class _Writer:
    def __init__(self) -> None:
        self.described: set[tuple[type[BaseModel], str]] = set()

    def model_lines(
        self,
        model: type[BaseModel],
        given: dict[str, Any] | None,
        indent: int,
        path: tuple[str, ...],
    ) -> list[str]:
        """The lines of one mapping of `model`: the keys in `given`, or (None) every field."""
        lines: list[str] = []
        for name, field in model.model_fields.items():
            extra = None
            if given is not None:
                if name not in given:
                    continue
                value = given[name]
            elif path + (name,) in OVERRIDES:
                value, extra = OVERRIDES[path + (name,)]
            elif field.examples:
                value = field.examples[0]
            elif _model_in(field.annotation) is not None and field.default_factory is not None:
                value = None  # a section: written field by field
            else:
                value = field.get_default(call_default_factory=True)
            if (model, name) not in self.described:
                self.described.add((model, name))
                required = "(required) " if field.is_required() else ""
                lines += _comment(required + (field.description or ""), indent)
            if extra:
                lines += _comment(extra, indent)
            lines += self.entry_lines(name, value, field.annotation, indent, path + (name,))
            if indent == 0:
                lines.append("")
        if indent == 0:
            lines.pop()
        return lines

    def entry_lines(
        self, key: str, value: Any, annotation: Any, indent: int, path: tuple[str, ...]
    ) -> list[str]:
        """The lines of `key: value`, nested mappings and lists written in block style."""
        head = " " * indent + _scalar(key) + ":"
        model = _model_in(annotation)
        if value is None and model is not None:
            return [head, *self.model_lines(model, None, indent + 2, path)]
        if isinstance(value, dict) and value:
            if model is not None:
                return [head, *self.model_lines(model, value, indent + 2, path)]
            item_model = _model_in(_dict_value_type(annotation))
            lines = [head]
            for item_key, item in value.items():
                if item_model is not None and isinstance(item, dict):
                    lines.append(" " * (indent + 2) + _scalar(item_key) + ":")
                    lines += self.model_lines(item_model, item, indent + 4, path + (item_key,))
                else:
                    lines.append(" " * (indent + 2) + f"{_scalar(item_key)}: {_scalar(item)}")
            return lines
        item_model = _model_in(_list_item_type(annotation))
        if isinstance(value, list) and value and item_model is not None:
            lines = [head]
            for number, item in enumerate(value):
                if number:
                    lines.append("")
                lines += _as_list_item(self.model_lines(item_model, item, indent + 4, path), indent)
            return lines
        return [f"{head} {_scalar(value)}"]


def _as_list_item(lines: list[str], indent: int) -> list[str]:
    """Turn a mapping's lines into a list item: its first key gets the `- `."""
    for number, line in enumerate(lines):
        if not line.lstrip().startswith("#"):
            lines[number] = " " * (indent + 2) + "- " + line[indent + 4 :]
            break
    return lines


def _comment(text: str, indent: int) -> list[str]:
    if not text:
        return []
    return [" " * indent + "# " + line for line in _wrap(text, WIDTH - indent - 2)]


def _wrap(text: str, width: int) -> list[str]:
    # Paths and URLs stay whole.
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def _scalar(value: Any) -> str:
    """A scalar, or a list of them in flow style, as YAML writes it (quoted where needed)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model `annotation` is, or holds as a union member (`X | None`, `bool | X`)."""
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            found = _model_in(member)
            if found is not None:
                return found
    return None


def _list_item_type(annotation: Any) -> Any:
    annotation = _strip(annotation)
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None


def _dict_value_type(annotation: Any) -> Any:
    annotation = _strip(annotation)
    return typing.get_args(annotation)[1] if typing.get_origin(annotation) is dict else None

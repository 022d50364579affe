"""Compose's variable interpolation (`${VAR:-default}` and friends) and its `.env` files.

Interpolation follows compose-go's `template` package:

- `$$` is a literal `$`; `$VAR` and `${VAR}` read a variable (names: `[_A-Za-z][_A-Za-z0-9]*`);
- `${VAR:-default}` when unset or empty, `${VAR-default}` when unset;
- `${VAR:?error}` fails when unset or empty, `${VAR?error}` when unset;
- `${VAR:+alt}` gives alt when set and not empty, `${VAR+alt}` when set;
- the word after the operator is interpolated too (`${A:-${B}}`), before it is used;
- an unset plain `$VAR`/`${VAR}` reads as an empty string and is reported through `on_unset`;
- a `$` followed by neither a name nor `{` stays as it is (`a $ b`, `^REGEX$`, `$1`);
- a `${` that is not a valid `${NAME...}` (`${}`, `${ foo}`, `${foo!}`, no `}`) is invalid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from opskit import errors

Lookup = Callable[[str], str | None]
UnsetCallback = Callable[[str], None]

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_BRACES = re.compile(r"\$\{|\}")
# `${A:-${B:-...}}` nested deeper than this is refused: real files nest two or three levels,
# and each level is a Python call (a hostile file must not reach the recursion limit).
MAX_NESTING = 100


class InterpolationError(ValueError):
    """A template compose would refuse: invalid syntax, or a required variable without value."""


def interpolate(template: str, lookup: Lookup, on_unset: UnsetCallback | None = None) -> str:
    """Given a string, return it with every variable substituted, as compose does.

    `lookup` returns a variable's value or None when unset. Raise `InterpolationError` for
    an invalid template, a `${VAR:?error}` whose variable has no value, or `${` nested more
    than `MAX_NESTING` deep.
    """
    return _interpolate(template, lookup, on_unset, 0)


def _interpolate(template: str, lookup: Lookup, on_unset: UnsetCallback | None, depth: int) -> str:
    if "$" not in template:
        return template
    parts: list[str] = []
    index = 0
    length = len(template)
    while index < length:
        dollar = template.find("$", index)
        if dollar < 0:
            parts.append(template[index:])
            break
        parts.append(template[index:dollar])
        following = template[dollar + 1 : dollar + 2]
        if following == "$":
            parts.append("$")
            index = dollar + 2
        elif following == "{":
            closing = _closing_brace(template, dollar)
            if closing < 0:
                raise InterpolationError(f"invalid template: {template!r}")
            body = template[dollar + 2 : closing]
            parts.append(_braced(body, template, lookup, on_unset, depth + 1))
            index = closing + 1
        else:
            name = _NAME.match(template, dollar + 1)
            if name is None:
                parts.append("$")
                index = dollar + 1
                continue
            parts.append(_plain(name.group(), lookup, on_unset))
            index = name.end()
    return "".join(parts)


def _closing_brace(template: str, start: int) -> int:
    """Return the index of the `}` that closes the `${` at `start`, counting nested `${`."""
    depth = 0
    for brace in _BRACES.finditer(template, start):
        if brace.group() == "${":
            depth += 1
            continue
        depth -= 1
        if depth == 0:
            return brace.start()
    return -1


def _plain(name: str, lookup: Lookup, on_unset: UnsetCallback | None) -> str:
    value = lookup(name)
    if value is None:
        if on_unset is not None:
            on_unset(name)
        return ""
    return value


def _braced(
    body: str, template: str, lookup: Lookup, on_unset: UnsetCallback | None, depth: int
) -> str:
    if depth > MAX_NESTING:
        raise InterpolationError(f"variables nested more than {MAX_NESTING} deep")
    name_match = _NAME.match(body)
    if name_match is None:
        raise InterpolationError(f"invalid template: {template!r}")
    name = name_match.group()
    rest = body[name_match.end() :]
    if not rest:
        return _plain(name, lookup, on_unset)
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise InterpolationError(f"invalid template: {template!r}")
    word = _interpolate(rest[len(operator) :], lookup, on_unset, depth)
    value = lookup(name)
    if operator == ":-":
        return word if not value else value
    if operator == "-":
        return word if value is None else value
    if operator == ":+":
        return word if value else (value or "")
    if operator == "+":
        return word if value is not None else ""
    if value is None or (operator == ":?" and value == ""):
        reason = f": {word}" if word else ""
        raise InterpolationError(f"required variable {name} is missing a value{reason}")
    return value


def environment_lookup(
    dotenv: Mapping[str, str], process_environment: Mapping[str, str] | None = None
) -> Lookup:
    """Return a lookup where the process environment overrides the `.env` values, as in compose."""
    process = os.environ if process_environment is None else process_environment

    def lookup(name: str) -> str | None:
        if name in process:
            return process[name]
        return dotenv.get(name)

    return lookup


def read_env_file(
    path: Path, process_environment: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Given a `.env` file, return its variables. Raise `ConfigError` if unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise errors.ConfigError(f"cannot read env file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise errors.ConfigError(f"env file {path} is not UTF-8 text") from exc
    process = os.environ if process_environment is None else process_environment
    try:
        return parse_env_text(text, process)
    except ValueError as exc:
        raise errors.ConfigError(f"env file {path}: {exc}") from exc


_ENV_KEY_END = re.compile(r"[=:]")


def parse_env_text(text: str, process_environment: Mapping[str, str]) -> dict[str, str]:
    """Given the text of a `.env` file, return its variables, as compose-go's dotenv reads them.

    `KEY=value`, `KEY: value`, `export KEY=value`; `# comments`; `'literal'`; `"escaped\\n
    and ${EXPANDED}"` (may span lines); unquoted values end at ` #`. A bare `KEY` takes the
    value from the process environment. Raise `ValueError` (with the line) on a bad line.
    """
    values: dict[str, str] = {}

    def lookup(name: str) -> str | None:
        if name in process_environment:
            return process_environment[name]
        return values.get(name)

    index = 0
    length = len(text)
    line_number, counted_to = 1, 0  # counted as the statements go by, not from the start
    while index < length:
        line_end = text.find("\n", index)
        line_end = length if line_end < 0 else line_end
        statement = text[index:line_end].strip()
        line_number += text.count("\n", counted_to, index)
        counted_to = index
        if not statement or statement.startswith("#"):
            index = line_end + 1
            continue
        offset = index + (len(text[index:line_end]) - len(text[index:line_end].lstrip()))
        if text.startswith("export ", offset) or text.startswith("export\t", offset):
            offset += len("export")
            while offset < line_end and text[offset] in " \t":
                offset += 1
        end_of_key = _ENV_KEY_END.search(text, offset, line_end)
        if end_of_key is None:
            key = text[offset:line_end].strip()
            _check_env_key(key, line_number)
            if key in process_environment:
                values[key] = process_environment[key]
            index = line_end + 1
            continue
        key = text[offset : end_of_key.start()].strip()
        _check_env_key(key, line_number)
        value_start = end_of_key.end()
        while value_start < line_end and text[value_start] in " \t":
            value_start += 1
        value, index = _env_value(text, value_start, line_end, line_number, lookup)
        values[key] = value
    return values


def _check_env_key(key: str, line_number: int) -> None:
    if not key or not all(char.isalnum() or char in "_." for char in key):
        raise ValueError(f"line {line_number}: invalid variable name {key!r}")


def _env_value(
    text: str, start: int, line_end: int, line_number: int, lookup: Lookup
) -> tuple[str, int]:
    """Return (value, index after the statement) for the value starting at `start`."""
    quote = text[start : start + 1]
    if quote not in ("'", '"'):
        raw = text[start:line_end].split(" #", 1)[0].rstrip()
        return _expand(raw, lookup, line_number), line_end + 1
    index = start + 1
    while True:
        closing = text.find(quote, index)
        if closing < 0:
            raise ValueError(f"line {line_number}: unterminated quoted value")
        if text[closing - 1] != "\\":
            break
        index = closing + 1
    raw = text[start + 1 : closing]
    rest_of_line = text.find("\n", closing)
    next_index = len(text) if rest_of_line < 0 else rest_of_line + 1
    if quote == "'":
        return raw, next_index
    unescaped = raw.replace("\\n", "\n").replace("\\r", "\r")
    unescaped = re.sub(r"\\([^$])", r"\1", unescaped)
    return _expand(unescaped, lookup, line_number), next_index


def _expand(raw: str, lookup: Lookup, line_number: int) -> str:
    try:
        return interpolate(raw, lookup)
    except InterpolationError as exc:
        raise ValueError(f"line {line_number}: {exc}") from exc

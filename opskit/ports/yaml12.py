"""A YAML loader that reads scalars the way compose does (YAML 1.2, go-yaml v3) and keeps lines.

PyYAML follows YAML 1.1: an unquoted `22:22` is the base-60 integer 1342, `yes`/`on` are
booleans and `0123` is octal. Compose reads its files with go-yaml v3, which resolves plain
scalars by the YAML 1.2 core schema (plus a few v3 compatibility rules copied here):

- null: `~`, `null`, `Null`, `NULL`, empty; booleans: `true`/`True`/`TRUE`, `false`/...
- integers: what Go's `strconv.ParseInt(s, 0, 64)` accepts after removing `_` (so `0x50`,
  `0o17`, `0b1` and the 1.1-style octal `017`), for scalars starting with a digit or a sign;
- floats: `[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `.inf`, `.nan`;
- no sexagesimal numbers, no timestamps (they stay strings), no `yes`/`no`/`on`/`off`.

Mappings load as `LineDict` and sequences as `LineList`, which remember the 1-based line and
column of every value, so findings can point at the exact line. Compose's merge tags `!reset`
and `!override` load as `RESET` and `Override(value)`.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
import yaml.constructor
import yaml.cyaml
import yaml.nodes

from opskit import errors, untrusted

# Values in one compose file once aliases and merge keys are expanded: far more than any real
# project (a large one has a few thousand), few enough that an alias bomb fails in milliseconds.
MAX_NODES = 1_000_000

Position = tuple[int, int]  # (line, column), both 1-based

_TAG_NULL = "tag:yaml.org,2002:null"
_TAG_BOOL = "tag:yaml.org,2002:bool"
_TAG_INT = "tag:yaml.org,2002:int"
_TAG_FLOAT = "tag:yaml.org,2002:float"
_TAG_STR = "tag:yaml.org,2002:str"
_TAG_MERGE = "tag:yaml.org,2002:merge"

_KEYWORDS: dict[str, tuple[str, Any]] = {
    **{word: (_TAG_BOOL, True) for word in ("true", "True", "TRUE")},
    **{word: (_TAG_BOOL, False) for word in ("false", "False", "FALSE")},
    **{word: (_TAG_NULL, None) for word in ("", "~", "null", "Null", "NULL")},
    **{word: (_TAG_FLOAT, float("nan")) for word in (".nan", ".NaN", ".NAN")},
    **{word: (_TAG_FLOAT, float("inf")) for word in (".inf", ".Inf", ".INF")},
    **{word: (_TAG_FLOAT, float("inf")) for word in ("+.inf", "+.Inf", "+.INF")},
    **{word: (_TAG_FLOAT, float("-inf")) for word in ("-.inf", "-.Inf", "-.INF")},
    "<<": (_TAG_MERGE, "<<"),
}
# Go's ParseInt with base 0, once underscores are gone.
_GO_INT = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_YAML_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?")


class LineDict(dict):
    """A mapping that remembers where it and each of its keys and values are written."""

    position: Position = (0, 0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_positions: dict[Any, Position] = {}
        self.value_positions: dict[Any, Position] = {}


class LineList(list):
    """A sequence that remembers where it and each of its items are written."""

    position: Position = (0, 0)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.positions: list[Position] = []


class _Reset:
    """Compose's `!reset`: the value is removed, whatever earlier files said."""

    def __repr__(self) -> str:
        return "RESET"


RESET = _Reset()


class Override:
    """Compose's `!override`: the value replaces the earlier files' value instead of merging."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Override({self.value!r})"


def resolve_plain_scalar(text: str) -> tuple[str, Any]:
    """Given an unquoted scalar, return (tag, value) as go-yaml v3 resolves it."""
    if text in _KEYWORDS:
        return _KEYWORDS[text]
    first = text[0]
    if first == ".":
        if _DOT_FLOAT.fullmatch(text):
            return _TAG_FLOAT, float(text)
        return _TAG_STR, text
    if not (first.isascii() and (first.isdigit() or first in "+-")):
        return _TAG_STR, text
    plain = text.replace("_", "")
    if _GO_INT.fullmatch(plain):
        return _TAG_INT, _go_int(plain)
    if _YAML_FLOAT.fullmatch(plain):
        return _TAG_FLOAT, float(plain)
    return _TAG_STR, text


def _go_int(plain: str) -> int:
    sign = -1 if plain.startswith("-") else 1
    digits = plain.lstrip("+-")
    prefix = digits[:2].lower()
    if prefix == "0x":
        return sign * int(digits[2:], 16)
    if prefix == "0o":
        return sign * int(digits[2:], 8)
    if prefix == "0b":
        return sign * int(digits[2:], 2)
    if len(digits) > 1 and digits.startswith("0"):
        return sign * int(digits, 8)
    return sign * int(digits)


def _position(node: yaml.nodes.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _ComposeResolver(yaml.resolver.BaseResolver):
    """Resolves plain scalars with `resolve_plain_scalar`; quoted scalars are strings."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.nodes.ScalarNode:
            if implicit[0]:
                return resolve_plain_scalar(value)[0]
            return _TAG_STR
        return super().resolve(kind, value, implicit)


class _ComposeConstructor(yaml.constructor.SafeConstructor):
    """Builds LineDict/LineList and go-yaml v3 numbers; rejects duplicate keys like compose."""

    def construct_object(self, node: yaml.nodes.Node, deep: bool = False) -> Any:
        # PyYAML's own constructors (`!!timestamp`, `!!binary`, ...) let some bad values
        # escape as ValueError, KeyError, IndexError or AttributeError: make them YAML errors.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, LookupError, AttributeError, TypeError) as exc:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            value = node.value if isinstance(node, yaml.nodes.ScalarNode) else "this value"
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown!r} as {tag}", node.start_mark
            ) from exc

    def construct_go_int(self, node: yaml.nodes.ScalarNode) -> int:
        tag, value = resolve_plain_scalar(self.construct_scalar(node))
        if tag != _TAG_INT:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.value!r} as an integer", node.start_mark
            )
        return value

    def construct_go_float(self, node: yaml.nodes.ScalarNode) -> float:
        tag, value = resolve_plain_scalar(self.construct_scalar(node))
        if tag not in (_TAG_FLOAT, _TAG_INT):
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.value!r} as a number", node.start_mark
            )
        return float(value)

    def construct_go_bool(self, node: yaml.nodes.ScalarNode) -> bool:
        return self.construct_scalar(node) in ("true", "True", "TRUE")

    def construct_line_dict(self, node: yaml.nodes.MappingNode):
        data = LineDict()
        data.position = _position(node)
        yield data
        self._reject_duplicate_keys(node)
        data.update(self.construct_mapping(node))
        # construct_mapping flattened `<<` merges into node.value; later pairs win, as in data.
        for key_node, value_node in node.value:
            key = self.construct_object(key_node)
            data.key_positions[key] = _position(key_node)
            data.value_positions[key] = _position(value_node)

    def construct_line_list(self, node: yaml.nodes.SequenceNode):
        data = LineList()
        data.position = _position(node)
        yield data
        data.extend(self.construct_sequence(node))
        data.positions = [_position(item) for item in node.value]

    def construct_reset(self, node: yaml.nodes.Node) -> _Reset:
        return RESET

    def construct_override(self, node: yaml.nodes.Node) -> Override:
        if isinstance(node, yaml.nodes.MappingNode):
            builder = self.construct_line_dict(node)
        elif isinstance(node, yaml.nodes.SequenceNode):
            builder = self.construct_line_list(node)
        else:
            plain = getattr(node, "style", None) is None
            return Override(resolve_plain_scalar(node.value)[1] if plain else node.value)
        value = next(builder)
        for _ in builder:
            pass
        return Override(value)

    def _reject_duplicate_keys(self, node: yaml.nodes.MappingNode) -> None:
        seen: dict[str, yaml.nodes.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.nodes.ScalarNode) or key_node.tag == _TAG_MERGE:
                continue
            if key_node.value in seen:
                first_line = seen[key_node.value].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"mapping key {key_node.value!r} already defined at line {first_line}",
                    key_node.start_mark,
                )
            seen[key_node.value] = key_node


_ComposeConstructor.add_constructor(_TAG_INT, _ComposeConstructor.construct_go_int)  # type: ignore[type-var]
_ComposeConstructor.add_constructor(_TAG_FLOAT, _ComposeConstructor.construct_go_float)  # type: ignore[type-var]
_ComposeConstructor.add_constructor(_TAG_BOOL, _ComposeConstructor.construct_go_bool)  # type: ignore[type-var]
_ComposeConstructor.add_constructor(  # type: ignore[type-var]
    "tag:yaml.org,2002:map", _ComposeConstructor.construct_line_dict
)
_ComposeConstructor.add_constructor(  # type: ignore[type-var]
    "tag:yaml.org,2002:seq", _ComposeConstructor.construct_line_list
)
_ComposeConstructor.add_constructor("!reset", _ComposeConstructor.construct_reset)  # type: ignore[type-var]
_ComposeConstructor.add_constructor("!override", _ComposeConstructor.construct_override)  # type: ignore[type-var]


if yaml.__with_libyaml__:

    class ComposeLoader(yaml.cyaml.CParser, _ComposeConstructor, _ComposeResolver):  # type: ignore[name-defined]
        """libyaml's parser with compose's scalar rules and line-keeping containers."""

        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)  # type: ignore[attr-defined]
            _ComposeConstructor.__init__(self)
            _ComposeResolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class ComposeLoader(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.composer.Composer,
        _ComposeConstructor,
        _ComposeResolver,
    ):
        """PyYAML's pure-Python parser with compose's scalar rules and line-keeping containers."""

        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _ComposeConstructor.__init__(self)
            _ComposeResolver.__init__(self)


def load_yaml(text: str, source: str) -> Any:
    """Given YAML text, return its one document as compose reads it (None when empty).

    Raise `ConfigError` naming `source` and the line for malformed YAML, duplicate keys or
    unknown tags, or for more than `MAX_NODES` values once aliases are expanded.
    """
    try:
        return untrusted.load_yaml_document(ComposeLoader(text), MAX_NODES, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = untrusted.printable(exc.problem or exc.context or "invalid YAML")
        raise errors.ConfigError(f"{source}{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{source}: {untrusted.printable(str(exc))}") from exc
    except ValueError as exc:
        # Python's int() refuses a plain number of thousands of digits while it is resolved.
        raise errors.ConfigError(
            f"{source}: a value cannot be read ({untrusted.printable(str(exc))})"
        ) from exc
    except RecursionError as exc:
        raise errors.ConfigError(f"{source}: nested too deeply to read") from exc

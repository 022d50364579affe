"""Reading input opskit does not control: bounded files, bounded YAML, printable names.

A config file, a compose file or a backup's metadata may be huge, binary, a device
(`--config /dev/zero`) or crafted (a YAML alias bomb), and names inside them may hold terminal
escape codes. Everything here fails fast, in small memory, with a one-line message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
import yaml.nodes

from opskit import errors

MIB = 1 << 20

# C0 controls, DEL and the C1 controls (a terminal reads \x9b as CSI), and the Unicode line and
# paragraph separators; each is shown as an escape instead.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """Given text from untrusted input (a backup id, a file name), return it with every control
    character shown as an escape (`\\x1b`, `\\n`), so it cannot move the cursor, recolour or
    rewrite what a terminal shows. Printable text comes back unchanged."""
    return _UNPRINTABLE.sub(lambda match: repr(match.group())[1:-1], text)


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a character that `printable` would escape."""
    return _UNPRINTABLE.search(text) is not None


def read_text_file(path: Path, limit: int, what: str) -> str:
    """Given a file the user named, return its UTF-8 text, reading at most `limit` bytes.

    Raise `ConfigError` (exit 2) if it cannot be read, is larger than `limit` or is not UTF-8;
    `what` names it in the message ("config", "compose file").
    """
    shown = printable(str(path))
    try:
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {what} {shown}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise errors.ConfigError(
            f"{what} {shown} is larger than {describe_size(limit)}", "is it the right file?"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.ConfigError(
            f"{what} {shown} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})"
        ) from exc


def describe_size(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB and size % MIB == 0 else f"{size} bytes"


def check_yaml_size(root: yaml.nodes.Node | None, limit: int, source: str) -> None:
    """Given a composed YAML document, raise `ConfigError` if expanding its aliases and merge
    keys would make more than `limit` nodes, or if an alias refers to a node containing it.

    Aliases only point at nodes, so the composed document is as small as its text; what an alias
    bomb multiplies is the work of everything that walks the loaded data. The expanded size is
    counted once per node (memoized), so this takes time linear in the text.
    """
    if root is None:
        return
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # An explicit stack: deeply nested documents must not exhaust Python's recursion limit.
    stack: list[tuple[yaml.nodes.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > limit:
                raise errors.ConfigError(
                    f"{source}: more than {limit:,} values once its aliases are expanded",
                    "is it an alias bomb? write the values out, or use fewer aliases",
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            line = node.start_mark.line + 1 if node.start_mark else 0
            raise errors.ConfigError(f"{source} line {line}: an alias refers to itself")
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                line = child.start_mark.line + 1 if child.start_mark else 0
                raise errors.ConfigError(f"{source} line {line}: an alias refers to itself")
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.nodes.Node) -> list[yaml.nodes.Node]:
    if isinstance(node, yaml.nodes.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.nodes.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml_document(loader: Any, limit: int, source: str) -> Any:
    """Given a PyYAML loader holding one document, compose it, check its expanded size with
    `check_yaml_size` and return the constructed data (None for an empty document).

    YAML errors propagate for the caller to word; the loader is disposed of.
    """
    try:
        node = loader.get_single_node()
        check_yaml_size(node, limit, source)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()

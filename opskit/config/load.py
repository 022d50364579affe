"""Finding, reading and validating the config file, with every error reported at once."""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path

import pydantic
import yaml

from opskit import errors, untrusted
from opskit.config.schema import REFERENCE_ERROR, Config, reference_problems

# A config is a few kilobytes; anything bigger is the wrong file (`--config /dev/zero`).
MAX_CONFIG_BYTES = untrusted.MIB
# Values in the config once aliases are expanded: generous for any real config, small enough
# that an alias bomb fails at once instead of filling the memory.
MAX_CONFIG_NODES = 100_000
# Problems an error message lists (a wrong file can have a hundred thousand); then a count.
MAX_PROBLEMS_SHOWN = 100

# Searched in order when neither --config nor OPSKIT_CONFIG names a file.
DEFAULT_CONFIG_PATHS = (
    Path("/etc/opskit/opskit.yaml"),
    Path.home() / ".config" / "opskit" / "opskit.yaml",
)


class _ConfigLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader, with what its constructors let escape for a bad value (`!!int x`,
    `2020-13-01`, `!!timestamp` of junk, an integer of thousands of digits: ValueError,
    KeyError, IndexError, AttributeError) turned into a YAML error at the value's line."""

    def construct_object(self, node: yaml.nodes.Node, deep: bool = False) -> typing.Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, LookupError, AttributeError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, _unreadable_value(node), node.start_mark
            ) from exc


def _unreadable_value(node: yaml.nodes.Node) -> str:
    """The problem with a YAML value its tag's constructor could not build."""
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    if isinstance(node, yaml.nodes.ScalarNode):
        value = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        return f"cannot read {value!r} as {tag}"
    return f"cannot read this value as {tag}"


def find_config_path(explicit: Path | None) -> Path | None:
    """Return the config path to use: explicit, else OPSKIT_CONFIG, else the first default that
    exists, else None (run on built-in defaults)."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get("OPSKIT_CONFIG")
    if from_env:
        return Path(from_env)
    return next((path for path in DEFAULT_CONFIG_PATHS if path.is_file()), None)


def load_config(explicit: Path | None = None) -> Config:
    """Given an optional path, return the validated config (defaults if there is no file).

    Raise `ConfigError` naming the file and every invalid field.
    """
    path = find_config_path(explicit)
    if path is None:
        return Config()
    return load_config_file(path)


def load_config_file(path: Path) -> Config:
    """Given the path of a config file, return its validated config (the daemon reloads with it).

    Raise `ConfigError` naming the file and every invalid field.
    """
    text = untrusted.read_text_file(path, MAX_CONFIG_BYTES, "config")
    return parse_config(text, source=untrusted.printable(str(path)))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Given YAML text, return the validated config. Raise `ConfigError` on any problem."""
    try:
        document = untrusted.load_yaml_document(
            _ConfigLoader(text), MAX_CONFIG_NODES, f"config {source}"
        )
    except RecursionError as exc:
        raise errors.ConfigError(f"config {source}: nested too deeply to read") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise errors.ConfigError(
            f"config {source}{where}: {untrusted.printable(str(problem))}"
        ) from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise errors.ConfigError(f"config {source}: expected a mapping at the top level")
    try:
        return Config.model_validate(document)
    except pydantic.ValidationError as exc:
        problems = validation_problems(exc)
        problems += _unreported_reference_problems(document, {path for path, _ in problems})
        raise errors.ConfigError(f"config {source}: {describe_problems(problems)}") from exc


def describe_validation_errors(exc: pydantic.ValidationError) -> str:
    """Return all validation errors on one line, e.g.
    `at 'targets.offsite.url': required, but missing; at 'jobs[0].shedule': unknown key ...`."""
    return describe_problems(validation_problems(exc))


def describe_problems(problems: list[tuple[str, str]]) -> str:
    """Given (key path, problem) pairs, return them on one line, control characters escaped;
    past `MAX_PROBLEMS_SHOWN`, only how many more there are."""
    # Keys come from the file: never let them reach the terminal as escape codes.
    shown = problems[:MAX_PROBLEMS_SHOWN]
    text = "; ".join(f"at '{path or '(top level)'}': {problem}" for path, problem in shown)
    if len(problems) > len(shown):
        text += f"; and {len(problems) - len(shown):,} more problems"
    return untrusted.printable(text)


def validation_problems(exc: pydantic.ValidationError) -> list[tuple[str, str]]:
    """Given pydantic's errors, return (key path, problem) pairs in the file's own terms:
    `jobs[0].target`, "unknown key 'shedule' (did you mean 'schedule'?)"."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        if error["type"] == REFERENCE_ERROR:
            problems.extend(error["ctx"]["problems"])
            continue
        path, parent = _key_path(error["loc"])
        problems.append((path, _problem(error, parent)))
    return problems


def _problem(error: typing.Any, parent: type[pydantic.BaseModel] | None) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        guess = difflib.get_close_matches(key, list(parent.model_fields), n=1) if parent else []
        return f"unknown key {key!r}" + (f" (did you mean {guess[0]!r}?)" if guess else "")
    if kind == "missing":
        return "required, but missing"
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "literal_error":
        return f"{message}, not {error['input']!r}"
    return message


def _key_path(location: tuple[int | str, ...]) -> tuple[str, type[pydantic.BaseModel] | None]:
    """Given pydantic's error location, return the key path as the file spells it, without the
    names pydantic gives union members (`jobs[0].verify`, not `jobs.0.verify.settings`), and
    the model that holds the last key (None if unknown)."""
    path = ""
    annotation: typing.Any = Config
    parent: type[pydantic.BaseModel] | None = None
    for part in location:
        annotation = _strip_annotated(annotation)
        members = _union_members(annotation)
        if members is not None:
            chosen = _member_named(members, part)
            if chosen is not None:
                annotation = chosen
                continue
            annotation = members[0] if len(members) == 1 else None
            annotation = _strip_annotated(annotation)
        parent = None
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            parent = annotation
            field = annotation.model_fields.get(str(part))
            annotation = field.annotation if field is not None else None
        elif typing.get_origin(annotation) is list and isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            annotation = None
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path, parent


def _strip_annotated(annotation: typing.Any) -> typing.Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_members(annotation: typing.Any) -> list[typing.Any] | None:
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    return [member for member in typing.get_args(annotation) if member is not type(None)]


def _member_named(members: list[typing.Any], part: int | str) -> typing.Any:
    """The union member pydantic names `part` in a location: by its Tag, else its type name."""
    for member in members:
        tags = [
            meta.tag
            for meta in getattr(member, "__metadata__", ())
            if isinstance(meta, pydantic.Tag)
        ]
        name = getattr(_strip_annotated(member), "__name__", None)
        if part in tags or part == name:
            return _strip_annotated(member)
    return None


def _unreported_reference_problems(document: dict, reported: set[str]) -> list[tuple[str, str]]:
    """Repeated job names and unknown targets, found in the raw document: `Config` checks them
    only once every field is valid, and all errors are to be shown at once."""
    jobs, targets = document.get("jobs"), document.get("targets", {})
    if not isinstance(jobs, list) or not isinstance(targets, dict):
        return []
    pairs = [(job.get("name"), job.get("target")) if isinstance(job, dict) else (None, None)
             for job in jobs]  # fmt: skip
    found = reference_problems(pairs, [name for name in targets if isinstance(name, str)])
    return [(path, problem) for path, problem in found if path not in reported]

"""Finding, reading and validating the config file, with every error reported at once."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import yaml

from opskit import errors, untrusted
from opskit.config.schema import Config

# A config is a few kilobytes; anything bigger is the wrong file (`--config /dev/zero`).
MAX_CONFIG_BYTES = untrusted.MIB
# Values in the config once aliases are expanded: generous for any real config, small enough
# that an alias bomb fails at once instead of filling the memory.
MAX_CONFIG_NODES = 100_000

# Searched in order when neither --config nor OPSKIT_CONFIG names a file.
DEFAULT_CONFIG_PATHS = (
    Path("/etc/opskit/opskit.yaml"),
    Path.home() / ".config" / "opskit" / "opskit.yaml",
)


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
    text = untrusted.read_text_file(path, MAX_CONFIG_BYTES, "config")
    return parse_config(text, source=untrusted.printable(str(path)))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Given YAML text, return the validated config. Raise `ConfigError` on any problem."""
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        document = untrusted.load_yaml_document(
            loader_class(text), MAX_CONFIG_NODES, f"config {source}"
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
        raise errors.ConfigError(f"config {source}: {describe_validation_errors(exc)}") from exc


def describe_validation_errors(exc: pydantic.ValidationError) -> str:
    """Return all validation errors on one line: `at 'targets.offsite.url': field required; ...`."""
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problems.append(f"at '{location}': {error['msg']}")
    # Keys come from the file: never let them reach the terminal as escape codes.
    return untrusted.printable("; ".join(problems))

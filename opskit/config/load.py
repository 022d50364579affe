"""Finding, reading and validating the config file, with every error reported at once."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import yaml

from opskit import errors
from opskit.config.schema import Config

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
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Given YAML text, return the validated config. Raise `ConfigError` on any problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise errors.ConfigError(f"config {source}{where}: {problem}") from exc
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
    return "; ".join(problems)

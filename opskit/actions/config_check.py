"""`config check`: load the config as a run would, and return it with every default filled in and
its secrets masked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from opskit.config.load import find_config_path, load_config_file
from opskit.config.schema import Config

MASK = "***"
SECRET_WORDS = ("secret", "password", "token", "key")
# URLs that may carry credentials in their user info or query string.
URL_FIELDS = ("webhook_url", "ping_url", "endpoint_url")
# Capability URLs: the path itself is the secret (hc-ping.com/<uuid>, hooks.slack.com/services/...).
CAPABILITY_URL_FIELDS = ("webhook_url", "ping_url")


@dataclass(frozen=True)
class ConfigCheckResult:
    """The config a run would use, and the file it came from (None: built-in defaults)."""

    path: Path | None
    config: Config

    def settings(self) -> dict[str, Any]:
        """The effective config as plain data, secrets masked."""
        return masked_settings(self.config)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config_file": None if self.path is None else str(self.path),
            "config": self.settings(),
        }


def run_config_check(explicit: Path | None) -> ConfigCheckResult:
    """Given --config (or None), find and validate the config the way every command does.

    Return the result. Raise `ConfigError` naming the file and every problem.
    """
    path = find_config_path(explicit)
    config = Config() if path is None else load_config_file(path)
    return ConfigCheckResult(path, config)


def masked_settings(model: BaseModel) -> dict[str, Any]:
    """Given a config model, return its fields as plain data (defaults included), with the
    values of secret-looking fields and the credentials in URLs replaced by `***`."""
    return {name: _masked(name, getattr(model, name)) for name in type(model).model_fields}


def is_secret_name(name: str) -> bool:
    """Whether a field's name says it holds a secret (`sse_kms_key_id`, `api_token`; not the
    retention's `keep_*`)."""
    lowered = name.lower()
    return not lowered.startswith("keep_") and any(word in lowered for word in SECRET_WORDS)


def mask_url(url: str, mask_path: bool = False) -> str:
    """Given a URL, return it with its user info, query and fragment (and, if asked, path)
    replaced by `***`; scheme and host stay, to show where it points."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    path = parts.path
    if mask_path and path not in ("", "/"):
        path = "/" + MASK
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            path,
            MASK if parts.query else "",
            MASK if parts.fragment else "",
        )
    )


def _masked(name: str, value: Any) -> Any:
    if value is None or value in ("", [], {}):
        return _plain(value)
    if is_secret_name(name):
        return MASK
    if name in URL_FIELDS and isinstance(value, str):
        return mask_url(value, mask_path=name in CAPABILITY_URL_FIELDS)
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return masked_settings(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        # Keys here are names the user chose (targets, labels), not field names: never masked.
        return {key: _plain(item) for key, item in value.items()}
    return value

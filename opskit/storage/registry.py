"""Choosing the storage implementation from a location's scheme: the one place that does."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from opskit import errors, untrusted
from opskit.config.schema import Config
from opskit.storage.base import Storage
from opskit.storage.local import LocalStorage


def open_storage(location: str, config: Config | None = None) -> Storage:
    """Given a location (a target name, a directory, file://..., s3://...), return its store.

    Raise `UsageError` for an unknown scheme, and for a bare name (no `/`) that names no
    configured target: a typo of a target's name must not write to a local folder.
    """
    config = config or Config()
    target = config.resolve_target(location)
    if not any(target is named for named in config.targets.values()):
        _check_not_a_bare_name(location, config)
    parsed = urlparse(target.url)
    if parsed.scheme == "s3":
        from opskit.storage import s3  # boto3 is imported only when S3 is used

        return s3.S3Storage.from_target(target)
    if parsed.scheme == "file":
        return LocalStorage(Path(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return LocalStorage(Path(target.url))
    raise errors.UsageError(
        f"unknown storage location {untrusted.printable(location)!r}",
        "use a directory path or s3://bucket/prefix",
    )


def _check_not_a_bare_name(location: str, config: Config) -> None:
    """Raise `UsageError` if `location` is a bare name: no `/`, no scheme, not `.`, `..`, `~user`.

    Directories are written with a `/` (`./backups`, `/var/backups/opskit`), so a bare name
    can only mean a target.
    """
    if "/" in location or ":" in location or location in (".", "..") or location.startswith("~"):
        return
    shown = untrusted.printable(location)
    if config.targets:
        configured = "configured targets: " + ", ".join(
            untrusted.printable(name) for name in sorted(config.targets)
        )
    else:
        configured = "no targets are configured"
    raise errors.UsageError(
        f"unknown target {shown!r} ({configured})",
        f"a relative directory is written ./{shown}",
    )

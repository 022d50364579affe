"""Choosing the storage implementation from a location's scheme: the one place that does."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from opskit import errors
from opskit.config.schema import Config
from opskit.storage.base import Storage
from opskit.storage.local import LocalStorage


def open_storage(location: str, config: Config | None = None) -> Storage:
    """Given a location (a target name, a directory, file://..., s3://...), return its store.

    Raise `UsageError` for an unknown scheme.
    """
    target = (config or Config()).resolve_target(location)
    parsed = urlparse(target.url)
    if parsed.scheme == "s3":
        from opskit.storage import s3  # boto3 is imported only when S3 is used

        return s3.S3Storage.from_target(target)
    if parsed.scheme == "file":
        return LocalStorage(Path(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return LocalStorage(Path(target.url))
    raise errors.UsageError(
        f"unknown storage location {location!r}", "use a directory path or s3://bucket/prefix"
    )

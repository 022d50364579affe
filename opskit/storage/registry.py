"""Choosing the store for a location: the implementation by its scheme, and a configured
target's host prefix (each machine's part of a target a fleet shares). The one place that does.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from opskit import errors, untrusted
from opskit.config.schema import Config
from opskit.config.targets import TargetConfig
from opskit.storage import hosts
from opskit.storage.base import Storage, check_directory_exists
from opskit.storage.local import LocalStorage


def open_storage(location: str, config: Config | None = None, host: str | None = None) -> Storage:
    """Given a location (a target name, a directory, file://..., s3://...), return its store.

    A configured target with host prefixes (see `TargetConfig.host_prefix`) opens this
    machine's part of it, or `host`'s if given; any other location is opened as it is.
    Raise `UsageError` for an unknown scheme, for `host` given for a location without host
    prefixes or not a host name, and for a bare name (no `/`) that names no configured target:
    a typo of a target's name must not write to a local folder.
    """
    config = config or Config()
    target = config.resolve_target(location)
    if not any(target is named for named in config.targets.values()):
        _check_not_a_bare_name(location, config)
    if uses_host_prefixes(location, config):
        prefix = hosts.safe_host_name(host) if host is not None else hosts.this_host()
        target = target.model_copy(update={"url": hosts.host_url(target.url, prefix)})
    elif host is not None:
        raise errors.UsageError(
            f"{untrusted.printable(location)!r} has no host prefixes, so no host can be chosen",
            "name a target with host prefixes (host_prefix: true), or give the host's own "
            "directory or s3:// prefix as the location",
        )
    return _open_target(location, target)


def uses_host_prefixes(location: str, config: Config | None = None) -> bool:
    """Given a location, return whether it names a configured target with host prefixes.

    Only a target's name does: a url or path given instead means that place exactly.
    """
    config = config or Config()
    return location in config.targets and config.targets[location].uses_host_prefix()


def fleet_hosts(location: str, config: Config | None = None) -> list[str]:
    """Given a target with host prefixes, return the hosts with a prefix holding objects in
    it, sorted (the directories directly below the target's url that can be host prefixes).

    Raise `UsageError` if the location has no host prefixes, `NotFound` if the target is a
    local directory that does not exist, and the store's errors as they come.
    """
    config = config or Config()
    if not uses_host_prefixes(location, config):
        raise errors.UsageError(
            f"{untrusted.printable(location)!r} has no host prefixes to list",
            "name a target with host prefixes (host_prefix: true)",
        )
    root = _open_target(location, config.targets[location])
    try:
        check_directory_exists(root, "check the target's url")
        return [name for name in root.list_directories() if hosts.is_host_prefix(name)]
    finally:
        root.close()


def _open_target(location: str, target: TargetConfig) -> Storage:
    """Return the store at `target`'s url; `location` names it in errors."""
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

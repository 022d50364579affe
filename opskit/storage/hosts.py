"""Host prefixes: the part of a shared target where one machine of a fleet keeps its backups."""

from __future__ import annotations

import re
import socket

from opskit import errors, untrusted

MAX_LENGTH = 63  # a DNS label's limit: room for any host name, short in keys and paths
# The directories a store's own layout keeps at its root (the record index of
# repository/index.py, the snapshot records of repository/snapshots.py): a target that held
# one host's backups before it had host prefixes has them, so no host prefix may be one.
LAYOUT_DIRECTORIES = ("index", "snapshots")
RESERVED_SUFFIX = "_host"


def this_host() -> str:
    """Return this machine's host prefix: its host name, made name-safe."""
    return safe_host_name(socket.gethostname())


def safe_host_name(name: str) -> str:
    """Given a host name (this machine's or one a user typed), return its host prefix.

    The prefix is lower case (host names are not case-sensitive); each run of characters other
    than letters, digits, `_`, `.` and `-` becomes one `_`; it is cut to `MAX_LENGTH` and loses
    `.`, `_` and `-` at its ends; a name of the store's own layout gets `_host` appended. A
    prefix given again returns itself. Raise `UsageError` if nothing is left of `name`.
    """
    prefix = re.sub(r"[^a-z0-9_.-]+", "_", name.lower())[:MAX_LENGTH].strip("._-")
    if not prefix:
        raise errors.UsageError(
            f"not a host name: {untrusted.printable(name)!r}",
            "give a host name of letters, digits, '.', '_' or '-'",
        )
    if prefix in LAYOUT_DIRECTORIES:
        prefix += RESERVED_SUFFIX
    return prefix


def is_host_prefix(name: str) -> bool:
    """Given a directory name at a target's root, return whether it can be a host prefix."""
    try:
        return safe_host_name(name) == name
    except errors.UsageError:
        return False


def host_url(url: str, host: str) -> str:
    """Given a target's url and a host prefix, return the url of that host's part of it."""
    return f"{url.rstrip('/')}/{host}"

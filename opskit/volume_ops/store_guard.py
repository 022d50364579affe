"""Keeping the store and the data apart: a backup must not archive itself, nor a restore wipe
the store that holds its own safety backup."""

from __future__ import annotations

import os

from opskit import errors
from opskit.engine import volumes
from opskit.engine.client import Engine
from opskit.storage.base import Storage


def check_store_outside(engine: Engine, storage: Storage, data: volumes.DataSource) -> None:
    """Raise `UsageError` if a local store lies inside `data` or holds it: a backup would
    archive itself, and a restore would wipe the store (and its own safety backup)."""
    store = storage.local_directory()
    data_directory = volumes.host_directory(engine, data)
    if store is None or data_directory is None:
        return
    if volumes.paths_overlap(os.path.realpath(store), os.path.realpath(data_directory)):
        raise errors.UsageError(
            f"the backup store {store} and {data.describe()} overlap",
            "keep backups outside the data they protect: choose another --to/--from",
        )

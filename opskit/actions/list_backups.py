"""`volume list`: the backups in a store, oldest first, and its damaged metadata files."""

from __future__ import annotations

from opskit import errors, untrusted
from opskit.actions.context import RunContext
from opskit.engine.source import DataSource
from opskit.repository import catalog


def run_list_backups(
    location: str, context: RunContext, volume: str | None = None
) -> catalog.Listing:
    """Given a store location, return its backups (only those of `volume`, if given), oldest
    first; the listing's `problems` are the metadata files passed over as damaged.

    Also remove what killed runs left in the store (partial files, staging objects). Raise
    `NotFound` if the store is a local directory that does not exist.
    """
    storage = context.store(location)
    directory = storage.local_directory()
    if directory is not None and not directory.is_dir():
        raise errors.NotFound(
            f"backup directory {untrusted.printable(str(directory))} does not exist",
            "check --from",
        )
    storage.remove_leftovers()
    source = DataSource.parse(volume).name if volume else None
    return catalog.list_records(storage, source)

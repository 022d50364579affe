"""`volume list`: the backups in a store, oldest first."""

from __future__ import annotations

from opskit.archive import catalog
from opskit.config.schema import Config
from opskit.engine.volumes import DataSource
from opskit.storage.registry import open_storage


def run_list_backups(
    location: str, config: Config, volume: str | None = None
) -> list[catalog.BackupRecord]:
    """Given a store location, return its backups (only those of `volume`, if given)."""
    storage = open_storage(location, config)
    try:
        source = DataSource.parse(volume).name if volume else None
        return catalog.list_records(storage, source)
    finally:
        storage.close()

"""`volume list`: the backups in a store, oldest first, and its damaged metadata files; or those
of every host of a target a fleet shares."""

from __future__ import annotations

import dataclasses

from opskit import errors
from opskit.actions.context import RunContext
from opskit.engine.source import DataSource
from opskit.repository import catalog
from opskit.storage import registry
from opskit.storage.base import check_directory_exists


def run_list_backups(
    location: str,
    context: RunContext,
    volume: str | None = None,
    host: str | None = None,
    all_hosts: bool = False,
) -> catalog.Listing:
    """Given a store location, return its backups (only those of `volume`, if given), oldest
    first; the listing's `problems` are the metadata files passed over as damaged.

    For a target with host prefixes this is this machine's part of it, `host`'s if given, or
    with `all_hosts` every host's in one listing (records tell hosts apart by `location` and
    `hostname`; a problem's name starts with its host's prefix). `all_hosts` for a location
    without host prefixes lists that location. Also remove what killed runs of this machine left
    in its own part (partial files, staging objects), never in another host's. Raise
    `NotFound` if the store is a local directory that does not exist, `UsageError` for `host`
    with `all_hosts` or for a location without host prefixes.
    """
    if host is not None and all_hosts:
        raise errors.UsageError("a host and all hosts cannot both be listed", "give one of them")
    source = DataSource.parse(volume).name if volume else None
    if all_hosts and registry.uses_host_prefixes(location, context.config):
        return _list_fleet(location, context, source)
    storage = context.store(location, host)
    check_directory_exists(storage)
    if host is None:
        storage.remove_leftovers()
    return catalog.list_records(storage, source)


def _list_fleet(location: str, context: RunContext, source: str | None) -> catalog.Listing:
    """Return the backups of every host of target `location`, oldest first, in one listing."""
    records: list[catalog.BackupRecord] = []
    problems: list[catalog.MetadataProblem] = []
    files_read = 0
    context.store(location).remove_leftovers()  # this machine's own part only
    for host in registry.fleet_hosts(location, context.config):
        listing = catalog.list_records(context.store(location, host), source)
        records += listing
        files_read += listing.files_read
        problems += [
            dataclasses.replace(problem, name=f"{host}/{problem.name}")
            for problem in listing.problems
        ]
    records.sort(key=lambda record: (record.created, record.id))
    fleet = catalog.Listing(records, problems)
    fleet.files_read = files_read
    return fleet

"""Choosing backups to show: `volume list --tag/--snapshot`."""

from __future__ import annotations

from collections.abc import Iterable

from opskit.repository.catalog import Listing


def filter_listing(
    listing: Listing, tags: Iterable[str] = (), snapshot: str | None = None
) -> Listing:
    """Given a listing, return the records that have any of `tags` (all records if none are
    given) and belong to `snapshot` (if given), in the same order, with the same problems.

    Several `--tag`s mean any of them, as several `--tag` options do in restic.
    """
    wanted = set(tags)
    records = [
        record
        for record in listing
        if (not wanted or wanted.intersection(record.tags))
        and (snapshot is None or record.snapshot == snapshot)
    ]
    return Listing(records, listing.problems)

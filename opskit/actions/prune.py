"""`volume prune`: remove the backups a retention policy does not keep, and orphaned archives.

Safety, in order of importance:

- Each backup goes metadata first, then archive: a backup is listed exactly when its metadata
  exists, so an interrupted prune never leaves a listed backup without its archive. It may
  leave an archive without metadata (an orphan); the next prune removes it.
- A source with a damaged metadata file (one named like its backups, or claiming to be one) is
  held: nothing of it is removed. The damaged file may be its newest or its only verified
  backup, and the guarantees cannot be kept about a backup that cannot be read. The other
  sources are pruned; the result names the held ones (the CLI then fails).
- An orphan is an archive named like a backup (`<id>.tar.zst|.tar.gz|.tar`) with no `<id>.json`
  at all, damaged or not, whose id's time is more than `ORPHAN_AGE` ago: a running backup
  commits its archive moments before its metadata, and a backup never takes that long. While
  the store has damaged metadata files (of the sources pruned), no archive counts as orphaned:
  a misnamed metadata file may still describe it.
- A dry run lists every decision and changes nothing (it does not remove leftovers either).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opskit import errors, untrusted
from opskit.actions.context import RunContext
from opskit.engine.volumes import DataSource
from opskit.log import get_logger
from opskit.repository import catalog, retention, snapshots
from opskit.storage.base import ObjectInfo, Storage, check_directory_exists

log = get_logger(__name__)

ORPHAN_AGE = timedelta(days=2)
# The id of a backup: `<slug>-<YYYYmmddTHHMMSSZ>-<suffix>` (catalog.new_backup_id).
_ID_TIME = re.compile(r"(?P<slug>.+)-(?P<time>[0-9]{8}T[0-9]{6}Z)-[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class PruneRequest:
    """What to prune: the store, the policy, optionally one source, and whether to only look."""

    location: str
    policy: retention.Policy
    volume: str | None = None  # a volume name or host path; None: every source
    dry_run: bool = False
    host: str | None = None  # another host's part of a target with host prefixes


@dataclass
class PrunedBackup:
    """One backup's decision. `reasons` are the rules that kept it (empty if removed)."""

    id: str
    source: str
    kind: str
    created: str
    size: int
    tags: list[str]
    action: str  # "keep" or "remove"
    reasons: list[str] = field(default_factory=list)
    removed: bool = False  # whether it is gone now (never in a dry run)


@dataclass
class OrphanArchive:
    """An archive whose metadata is gone: unreachable by list and restore."""

    name: str
    size: int
    removed: bool = False


@dataclass
class HeldSource:
    """A source of which nothing was removed, because of its damaged metadata files."""

    source: str
    kind: str
    problems: list[str]  # printable: `name: reason`


@dataclass
class PruneResult:
    location: str
    policy: str
    dry_run: bool
    backups: list[PrunedBackup] = field(default_factory=list)  # oldest first
    orphans: list[OrphanArchive] = field(default_factory=list)
    held: list[HeldSource] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # every damaged metadata file seen
    snapshots_removed: list[str] = field(default_factory=list)  # records left without members

    @property
    def removed(self) -> list[PrunedBackup]:
        return [backup for backup in self.backups if backup.action == "remove"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_prune(
    request: PruneRequest, context: RunContext, now: datetime | None = None
) -> PruneResult:
    """Given a store, a policy and optionally a source, remove the backups the policy does not
    keep (metadata first, then archive), and orphaned archives; with `dry_run`, only decide.

    Return every backup's decision. Raise `UsageError` if the policy has no rule, `NotFound`
    if the store is a local directory that does not exist, and a `StorageError` if a removal
    fails (naming how many were removed before it).
    """
    request.policy.check()
    now = now or catalog.utc_now()
    storage = context.store(request.location, request.host)
    check_directory_exists(storage)
    if not request.dry_run and request.host is None:  # never another host's in-progress files
        storage.remove_leftovers()
    source = DataSource.parse(request.volume).name if request.volume else None
    listing = catalog.list_records(storage, source)
    selection = retention.select(listing, request.policy, now)
    held = _held_sources(listing, listing.problems)
    result = PruneResult(
        location=storage.url,
        policy=request.policy.describe(),
        dry_run=request.dry_run,
        held=list(held.values()),
        problems=[str(problem) for problem in listing.problems],
    )
    for record in listing:
        result.backups.append(_decision(record, selection, held))
    # A damaged or misnamed metadata file may be the one of an archive that looks
    # orphaned: while there are any, no archive counts as an orphan.
    if not listing.problems:
        orphans = _orphans(list(storage.list()), source, now)
        result.orphans = [OrphanArchive(info.name, info.size) for info in orphans]
    if not request.dry_run:
        _remove(storage, listing, result)
    return result


def _held_sources(
    records: Iterable[catalog.BackupRecord], problems: list[catalog.MetadataProblem]
) -> dict[tuple[str, str], HeldSource]:
    """Return the sources (by kind and name) that a damaged metadata file may belong to."""
    held: dict[tuple[str, str], HeldSource] = {}
    for record in records:
        key = (record.kind, record.source)
        if key in held:
            continue
        related = [
            str(problem)
            for problem in problems
            if problem.claimed_source == record.source
            or catalog.could_be_backup_of(problem.name, record.source)
        ]
        if related:
            held[key] = HeldSource(record.source, record.kind, related)
    return held


def _decision(
    record: catalog.BackupRecord,
    selection: retention.Selection,
    held: dict[tuple[str, str], HeldSource],
) -> PrunedBackup:
    reasons = list(selection.reasons.get(record.id, ()))
    if (record.kind, record.source) in held:
        reasons.append("held: damaged metadata of this source")
    return PrunedBackup(
        id=record.id,
        source=record.source,
        kind=record.kind,
        created=record.created,
        size=record.size,
        tags=list(record.tags),
        action="keep" if reasons else "remove",
        reasons=reasons,
    )


def _orphans(objects: list[ObjectInfo], source: str | None, now: datetime) -> list[ObjectInfo]:
    """Return the archives in `objects` that have no metadata file and are older than
    `ORPHAN_AGE` by their id's time (of `source` only, if given)."""
    names = {info.name for info in objects}
    found = []
    for info in objects:
        backup_id = _archive_id(info.name)
        if backup_id is None or catalog.metadata_name(backup_id) in names:
            continue
        match = _ID_TIME.fullmatch(backup_id)
        if match is None:
            continue
        if source is not None and match["slug"] != catalog.source_slug(source):
            continue
        made = datetime.strptime(match["time"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if now - made > ORPHAN_AGE:
            found.append(info)
    return found


def _archive_id(name: str) -> str | None:
    """Return the backup id of an archive's object name, or None if it is not named as one."""
    for suffix in sorted(catalog.ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            backup_id = name[: -len(suffix)]
            if catalog.SAFE_ID.fullmatch(backup_id):
                return backup_id
    return None


def _remove(storage: Storage, records: list[catalog.BackupRecord], result: PruneResult) -> None:
    """Remove the backups `result` says to remove, then its orphans; mark each removed."""
    by_id = {record.id: record for record in records}
    doomed = result.removed
    for done, backup in enumerate(doomed):
        record = by_id[backup.id]
        try:
            catalog.remove_backup(storage, record)
        except errors.StorageError as exc:
            raise type(exc)(
                f"removed {done} of {len(doomed)} backups, then removing "
                f"{untrusted.printable(record.id)} failed: {exc.message}",
                exc.hint,
            ) from exc
        backup.removed = True
        log.info("removed backup", backup=record.id, source=record.source)
    for orphan in result.orphans:
        _remove_if_present(storage, orphan.name)
        orphan.removed = True
        log.info("removed orphaned archive", name=orphan.name)
    emptied = {by_id[backup.id].snapshot for backup in doomed if by_id[backup.id].snapshot}
    result.snapshots_removed = snapshots.remove_emptied(storage, {s for s in emptied if s})


def _remove_if_present(storage: Storage, name: str) -> None:
    """Remove object `name`; one that is already gone (another prune, a delete) is fine."""
    try:
        storage.remove(name)
    except errors.NotFound:
        log.debug("already removed", name=name)

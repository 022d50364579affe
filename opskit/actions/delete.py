"""`volume delete`: remove one backup by id, metadata first, then its archive.

The newest backup of a source is refused without `force`: prune never removes it, and a
mistyped id must not take a source's last good state. A backup whose metadata is damaged can
be deleted too (its `<id>.json` and any `<id>.tar*`): that is how a damaged file that holds a
source in `prune` is cleared. Asking for confirmation is the caller's: pass `confirm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from opskit import errors, untrusted
from opskit.actions.context import RunContext
from opskit.log import get_logger
from opskit.repository import catalog, snapshots
from opskit.storage.base import Storage, check_directory_exists

log = get_logger(__name__)


@dataclass(frozen=True)
class DeleteRequest:
    location: str
    backup_id: str
    force: bool = False  # delete a guarded backup too (newest, protected, verified, snapshot)
    protected_tags: tuple[str, ...] = ("pre-upgrade", "pre-restore")


@dataclass
class DeleteResult:
    """The backup to delete (`source` etc. are empty when its metadata is damaged), the
    objects removed, and whether it is gone (False: `confirm` said no)."""

    id: str
    location: str
    source: str = ""
    kind: str = ""
    created: str = ""
    size: int = 0
    tags: list[str] = field(default_factory=list)
    newest: bool = False  # the newest backup of its source
    damaged: str = ""  # why its metadata is not a valid record, if it is not
    objects: list[str] = field(default_factory=list)  # metadata first
    deleted: bool = False
    snapshot: str | None = None  # the snapshot it belongs to
    snapshots_removed: list[str] = field(default_factory=list)  # records left without members

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_delete(
    request: DeleteRequest,
    context: RunContext,
    confirm: Callable[[DeleteResult], bool] | None = None,
) -> DeleteResult:
    """Given a store and a backup id, remove that backup's metadata, then its archive; if
    `confirm` is given, only once it returns True for the backup found.

    Return what was (or, if not confirmed, would have been) removed. Raise `UsageError` if the
    id is not a backup id, or names the newest backup of its source and `force` is not set;
    raise `NotFound` if the store has no such backup, a `StorageError` if a removal fails.
    """
    shown = untrusted.printable(request.backup_id)
    if not catalog.SAFE_ID.fullmatch(request.backup_id):
        raise errors.UsageError(f"{shown!r} is not a backup id", "copy one from opskit volume list")
    storage = context.store(request.location)
    check_directory_exists(storage)
    candidate = _find(storage, request)
    if confirm is not None and not confirm(candidate):
        return candidate
    for name in candidate.objects:
        try:
            storage.remove(name)
        except errors.NotFound:
            log.debug("already removed", name=name)
    candidate.deleted = True
    if candidate.snapshot:
        candidate.snapshots_removed = snapshots.remove_emptied(storage, {candidate.snapshot})
    log.info("deleted backup", backup=request.backup_id, source=candidate.source)
    return candidate


def _find(storage: Storage, request: DeleteRequest) -> DeleteResult:
    """Return what deleting the backup would remove. Raise as `run_delete` says."""
    backup_id = request.backup_id
    shown = untrusted.printable(backup_id)
    shown_url = untrusted.printable(storage.url)
    listing = catalog.list_records(storage)
    result = DeleteResult(id=backup_id, location=storage.url)
    for record in listing:
        if record.id != backup_id:
            continue
        siblings = [
            other
            for other in listing
            if (other.hostname, other.kind, other.source)
            == (record.hostname, record.kind, record.source)
        ]
        result.newest = siblings[-1] is record  # a listing is oldest first
        guarded = _guarded_because(record, siblings, request.protected_tags)
        if guarded and not request.force:
            raise errors.UsageError(f"{shown} is {guarded}", "pass --force to delete it anyway")
        result.source, result.kind, result.created = record.source, record.kind, record.created
        result.size, result.tags = record.size, list(record.tags)
        result.snapshot = record.snapshot
        result.objects = [catalog.metadata_name(backup_id), record.archive]
        return result
    for problem in listing.problems:
        if problem.name == catalog.metadata_name(backup_id):
            result.damaged = problem.reason
            archives = {info.name for info in storage.list(backup_id)}
            result.objects = [problem.name] + [
                backup_id + suffix
                for suffix in catalog.ARCHIVE_SUFFIXES
                if backup_id + suffix in archives
            ]
            return result
    raise errors.NotFound(
        f"no backup {shown} in {shown_url}",
        f"list them with: opskit volume list --from {shown_url}",
    )


def _guarded_because(
    record: catalog.BackupRecord,
    siblings: list[catalog.BackupRecord],
    protected_tags: tuple[str, ...],
) -> str:
    """Why deleting `record` needs --force ('' if nothing guards it), as prune's guarantees."""
    source = untrusted.printable(record.source)
    if siblings and siblings[-1] is record:
        return f"the newest backup of {source}"
    tags = [tag for tag in record.tags if tag in protected_tags]
    if tags:
        return f"tagged {untrusted.printable(tags[0])}, which prune protects"
    verified = [other for other in siblings if other.verified_ok is True]
    if record.verified_ok is True and verified[-1] is record:
        return f"the newest verified backup of {source}"
    if record.snapshot:
        return f"a member of snapshot {untrusted.printable(record.snapshot)} (restored as a set)"
    return ""

"""`volume restore --snapshot ID`: restore a compose project's snapshot as one set.

Every member is checked before any target is touched: its record is readable and belongs to
the snapshot, its archive is stored with its recorded size, its target exists or can be
created, a non-empty target needs --force and one in use needs --stop-containers. Only then
are the users of all targets stopped (once) and each member restored through the normal,
journaled restore (restore.py); the users start again in reverse order, even on failure.
Every target's lock is held from the checks to the last restore (each member's restore
re-enters it), so no other run changes a checked target before its turn.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from opskit import errors, untrusted
from opskit.actions.context import RunContext
from opskit.actions.restore import RestoreRequest, RestoreResult, run_restore
from opskit.engine import client, helper, lock, volumes
from opskit.engine.stop_marks import RESTORE
from opskit.repository import catalog, snapshots
from opskit.storage.base import Storage
from opskit.volume_ops import staging
from opskit.volume_ops.users import containers_stopped


@dataclass
class SnapshotRestoreRequest:
    snapshot: str
    from_: str
    force: bool = False
    stop_containers: bool = False
    transfer: str = "auto"
    helper_image: str | None = None
    docker_host: str | None = None
    wait_seconds: float = 0.0
    allow_devices: bool = False


@dataclass
class SnapshotRestoreResult:
    snapshot: snapshots.SnapshotRecord
    restored: list[RestoreResult]
    restarted_containers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "snapshot": self.snapshot.to_dict(),
            "restored": [result.to_dict() for result in self.restored],
            "restarted_containers": self.restarted_containers,
        }


def run_restore_snapshot(
    request: SnapshotRestoreRequest, context: RunContext
) -> SnapshotRestoreResult:
    """Given a snapshot id, check every member, then restore them all. Return what was done.

    Raise, before touching anything, `NotFound`/`MetadataCorrupt` for a missing or damaged
    snapshot or member, `ArchiveCorrupt` for a missing or resized archive, `TargetNotEmpty`
    or `TargetInUse` for targets that need --force or --stop-containers (the message names
    every problem found). Raise a member's restore error if one fails midway (the message
    names the members restored before it).
    """
    storage = context.store(request.from_)
    engine = context.engine(request.docker_host)
    restored: list[RestoreResult] = []
    record = snapshots.read_snapshot(storage, request.snapshot)
    image = context.helper_image(request.helper_image)
    with contextlib.ExitStack() as locks:
        # Every target's lock, from the checks to the last restore: no other run can
        # change a checked target before its turn (each restore re-enters its lock).
        for member in record.members:
            target = _member_target(request, member)
            locks.enter_context(lock.held(engine, target, "restore", image,
                                          request.wait_seconds, context.emit))  # fmt: skip
        users = _check_members(engine, storage, image, record, request,
                                   lambda: context.identities(request.from_))  # fmt: skip
        restarted = _restore_members(request, context, engine, record, users, restored)
    return SnapshotRestoreResult(record, restored, restarted)


def _restore_members(
    request: SnapshotRestoreRequest,
    context: RunContext,
    engine: client.Engine,
    record: snapshots.SnapshotRecord,
    users: list[volumes.ContainerRef],
    restored: list[RestoreResult],
) -> list[str]:
    with containers_stopped(engine, users, context.emit, RESTORE) as stopped:
        for member in record.members:
            try:
                restored.append(run_restore(_member_request(request, member), context))
            except errors.OpskitError as error:
                error.message = _midway_message(record, restored, member, error.message)
                raise
        return [ref.name for ref in stopped]


def _member_target(
    request: SnapshotRestoreRequest, member: snapshots.SnapshotMember
) -> volumes.DataSource:
    """Where a member goes: back to its own source."""
    return volumes.DataSource.parse(member.source)


def _member_request(
    request: SnapshotRestoreRequest, member: snapshots.SnapshotMember
) -> RestoreRequest:
    return RestoreRequest(
        source=member.source,
        from_=request.from_,
        backup=member.backup,
        force=request.force,
        stop_containers=False,  # stopped once for the whole set
        transfer=request.transfer,
        helper_image=request.helper_image,
        docker_host=request.docker_host,
        wait_seconds=request.wait_seconds,
        allow_devices=request.allow_devices,
    )


def _midway_message(
    record: snapshots.SnapshotRecord,
    restored: list[RestoreResult],
    failed: snapshots.SnapshotMember,
    message: str,
) -> str:
    done = ", ".join(result.target for result in restored) or "none"
    left = [member.source for member in record.members[len(restored) + 1 :]]
    return (
        f"snapshot {record.id}: restoring {failed.kind} {failed.source} failed: {message} "
        f"(restored before it: {done}" + (f"; not restored: {', '.join(left)})" if left else ")")
    )


def _check_members(
    engine: client.Engine,
    storage: Storage,
    image: str,
    record: snapshots.SnapshotRecord,
    request: SnapshotRestoreRequest,
    identities: Callable[[], list[object]],
) -> list[volumes.ContainerRef]:
    """Check every member as described above; return the running users of all targets (to
    stop). Raise the first problem's error class with every problem in its message."""
    problems: list[errors.OpskitError] = []
    users: dict[str, volumes.ContainerRef] = {}
    for member in record.members:
        target = volumes.DataSource(member.kind, member.source)
        try:
            _check_stored(storage, record.id, member, request.allow_devices, identities)
            exists = _check_target(engine, target)
            if exists:
                _check_contents(engine, image, target, request.force)
            for ref in volumes.running_users(engine, target):
                if ref.is_opskit_helper:
                    raise errors.TargetInUse(
                        f"another opskit operation is using {target.describe()}"
                    )
                if not request.stop_containers:
                    raise errors.TargetInUse(
                        f"{target.describe()} is used by running container {ref.name}",
                        "pass --stop-containers",
                    )
                users.setdefault(ref.id, ref)
        except errors.OpskitError as error:
            problems.append(error)
    if problems:
        first = problems[0]
        text = "; ".join(str(problem) for problem in problems)
        raise type(first)(f"snapshot {record.id} cannot be restored, nothing was changed: {text}")
    return list(users.values())


def _check_stored(
    storage: Storage,
    snapshot_id: str,
    member: snapshots.SnapshotMember,
    allow_devices: bool,
    identities: Callable[[], list[object]],
) -> None:
    """The member's record is readable and of this snapshot; its archive is whole, safe and
    matches its sha256 (read once here, so that no member is swapped in before all are good)."""
    shown = untrusted.printable(member.backup)
    try:
        raw = storage.read_bytes(catalog.metadata_name(member.backup))
    except errors.NotFound:
        raise errors.NotFound(f"member backup {shown} is missing") from None
    try:
        backup = catalog.parse_record(json.loads(raw))
    except (ValueError, RecursionError) as exc:
        reason = untrusted.printable(str(exc))
        raise errors.MetadataCorrupt(f"member backup {shown} is damaged: {reason}") from exc
    if (backup.id, backup.source, backup.kind, backup.snapshot) != (
        member.backup,
        member.source,
        member.kind,
        snapshot_id,
    ):
        raise errors.MetadataCorrupt(f"member backup {shown} does not belong to this snapshot")
    try:
        size = storage.stat(backup.archive).size
    except errors.NotFound:
        raise errors.ArchiveCorrupt(f"the archive of member backup {shown} is missing") from None
    if size != backup.size:
        raise errors.ArchiveCorrupt(
            f"the archive of member backup {shown} has {size} bytes, not {backup.size}"
        )
    keys = identities() if backup.encrypted else []
    staging.check_decryptable(storage, backup, keys)
    staging.check_archive(storage, backup, allow_devices, keys)


def _check_target(engine: client.Engine, target: volumes.DataSource) -> bool:
    """Return whether the target exists; raise `NotFound` if it neither exists nor can be
    created (a path whose parent directory is missing)."""
    if target.kind == "volume":
        return volumes.volume_exists(engine, target.name)
    if not engine.shares_filesystem:
        return True  # the restore itself finds out; its helper mounts the path
    if os.path.isdir(target.name):
        return True
    if not os.path.isdir(os.path.dirname(target.name)):
        raise errors.NotFound(f"path {target.name} cannot be created: its parent is missing")
    return False


def _check_contents(
    engine: client.Engine, image: str, target: volumes.DataSource, force: bool
) -> None:
    """Raise `TargetNotEmpty` if an existing target has data and `force` is not given."""
    if force:
        return
    with helper.helper_session(
        engine, image, target, staging.TARGET_MOUNT_POINT, read_only=True
    ) as session:
        has_data = staging.target_has_data(session, target.describe())
    if has_data:
        raise errors.TargetNotEmpty(f"{target.describe()} is not empty", "pass --force")

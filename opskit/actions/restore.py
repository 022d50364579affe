"""`volume restore`: unpack a backup into a volume or bind path, safely.

The order is what makes it safe at 3 a.m.:
1. take the target's lock (engine/lock.py): no other backup or restore of it runs meanwhile;
2. finish or roll back a restore that a killed run left, as its journal says (staging.py);
3. refuse a target in use without --stop-containers, and a non-empty one without --force,
   before anything is stopped;
4. stop the users; with --force, save the current contents as a `pre-restore` backup first;
5. unpack into a hidden staging directory inside the target while checking every tar header
   (no entry may leave the staging directory) and the archive's sha256; a corrupt or unsafe
   archive stops here and never touches the old data;
6. swap by renames, journaled, signals held off, and start the stopped containers again
   whatever happened.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from opskit import errors, events
from opskit.actions.context import RunContext
from opskit.archive import age
from opskit.archive.pipeline import ProgressCallback
from opskit.engine import client, helper, lock, transfer, volumes
from opskit.engine.stop_marks import RESTORE
from opskit.log import get_logger
from opskit.repository import catalog
from opskit.storage.base import Storage
from opskit.volume_ops import journal, staging
from opskit.volume_ops.back_up import BackupLabels, write_backup
from opskit.volume_ops.store_guard import check_store_outside
from opskit.volume_ops.users import containers_stopped, used_by_others

log = get_logger(__name__)


@dataclass
class RestoreRequest:
    """Which backup of `source` to restore from the store `from_`, and into what."""

    source: str
    from_: str
    backup: str = "latest"
    into: str | None = None  # default: the source itself
    force: bool = False
    stop_containers: bool = False
    transfer: str = "auto"
    helper_image: str | None = None
    docker_host: str | None = None
    wait_seconds: float = 0.0  # for another run's lock on the target
    allow_devices: bool = False
    host: str | None = None  # another host's part of a target with host prefixes


@dataclass
class RestoreResult:
    backup: catalog.BackupRecord
    target: str
    target_kind: str
    created_target: bool
    replaced_contents: bool
    safety_backup: catalog.BackupRecord | None
    restarted_containers: list[str] = field(default_factory=list)
    transfer: str = ""
    setid_files: list[str] = field(default_factory=list)  # setuid/setgid files restored
    setid_count: int = 0
    capability_files: list[str] = field(default_factory=list)  # files with capabilities
    capability_count: int = 0
    recovered: str | None = None  # what was done about an earlier, interrupted restore
    signal_after_commit: str | None = None  # a signal that arrived once the swap was done
    old_contents_left: bool = False  # replaced entries still hidden, deleted by the next run

    def to_dict(self) -> dict:
        return {
            "setid_files": self.setid_files,
            "setid_count": self.setid_count,
            "capability_files": self.capability_files,
            "capability_count": self.capability_count,
            "recovered": self.recovered,
            "signal_after_commit": self.signal_after_commit,
            "old_contents_left": self.old_contents_left,
            "backup": self.backup.to_dict(),
            "target": self.target,
            "target_kind": self.target_kind,
            "created_target": self.created_target,
            "replaced_contents": self.replaced_contents,
            "safety_backup": self.safety_backup.to_dict() if self.safety_backup else None,
            "restarted_containers": self.restarted_containers,
            "transfer": self.transfer,
        }


def run_restore(
    request: RestoreRequest,
    context: RunContext,
    on_progress: ProgressCallback | None = None,
    on_total: ProgressCallback | None = None,
) -> RestoreResult:
    """Given a request, restore the chosen backup into the target. Return what was done.

    `on_progress` is called with the stored bytes read, `on_total` once with their total.
    Raise `NotFound` (no such backup), `TargetLocked`, `TargetNotEmpty`, `TargetInUse`,
    `ChecksumMismatch`, `ArchiveCorrupt`, `ArchiveUnsafe`, `HelperFailed`: the target then
    keeps its previous contents. Raise `SwapFailed` if the verified swap could not be finished
    (the message says how to finish it).
    """
    source = volumes.DataSource.parse(request.source)
    storage = context.store(request.from_, request.host)
    if request.host is None:  # never another host's in-progress files
        storage.remove_leftovers()  # partial files of killed runs
    engine = context.engine(request.docker_host)
    emit = context.emit
    record = catalog.find_record(storage, source.name, request.backup)
    identities = context.identities(request.from_) if record.encrypted else []
    staging.check_decryptable(storage, record, identities)
    safety_recipients = _safety_recipients(context, request, record, identities)
    if on_total is not None:
        on_total(record.size)  # progress counts the archive's stored bytes
    target = volumes.DataSource.parse(request.into) if request.into else source
    check_store_outside(engine, storage, target)
    image = context.helper_image(request.helper_image)
    with lock.held(engine, target, "restore", image, request.wait_seconds, emit):
        created_target = _ensure_target(engine, target, record)
        try:
            return _restore_into(request, image, engine, storage, record, target,
                                 on_progress, emit, created_target, identities,
                                 safety_recipients)  # fmt: skip
        except BaseException as failure:
            # After the commit point (SwapFailed) the target holds verified data: keep it.
            if created_target and not isinstance(failure, errors.SwapFailed):
                _remove_created_target(engine, target)
            raise


def _restore_into(
    request: RestoreRequest,
    image: str,
    engine: client.Engine,
    storage: Storage,
    record: catalog.BackupRecord,
    target: volumes.DataSource,
    on_progress: ProgressCallback | None,
    emit: events.EventSink,
    created_target: bool,
    identities: list[object],
    safety_recipients: list[age.Recipient],
) -> RestoreResult:
    users = used_by_others(engine, target)
    if users and not request.stop_containers:
        raise errors.TargetInUse(
            f"{target.describe()} is used by running containers "
            f"{', '.join(user.name for user in users)}",
            "stop them, or pass --stop-containers to stop and restart them around the restore",
        )
    outcome: staging.StagedRestore | None = None
    late_signal: str | None = None
    try:
        with contextlib.ExitStack() as stack:
            data_path = stack.enter_context(transfer.open_transfer(engine, request.transfer))
            session = stack.enter_context(
                helper.helper_session(
                    engine,
                    image,
                    target,
                    staging.TARGET_MOUNT_POINT,
                    read_only=False,
                    extra_mounts=data_path.mounts(),
                )
            )
            stopped: list[volumes.ContainerRef] | None = None
            if users and journal.journal_present(session, staging.TARGET_MOUNT_POINT, "target"):
                # Finishing a killed restore moves entries: never under a running app.
                stopped = stack.enter_context(containers_stopped(engine, users, emit, RESTORE))
            recovered = staging.recover(session, target.describe())
            if recovered:
                emit(events.RestoreRecovered(recovered))
            # Refuse before anything is stopped: a refusal must not touch the running app.
            has_data = staging.target_has_data(session, target.describe())
            if has_data and not request.force:
                raise errors.TargetNotEmpty(
                    f"{target.describe()} is not empty",
                    "pass --force to replace its contents (they are saved first as a "
                    "pre-restore backup), or restore --into a new volume",
                )
            if stopped is None:
                stopped = stack.enter_context(containers_stopped(engine, users, emit, RESTORE))
            safety = _save_current_contents(session, data_path, storage, target, emit,
                                            safety_recipients) if (
                has_data
            ) else None  # fmt: skip
            try:
                outcome = staging.restore_staged(
                    session,
                    data_path,
                    storage,
                    record,
                    target.describe(),
                    on_progress,
                    request.allow_devices,
                    identities,
                )
            except errors.OpskitError as error:
                if safety is not None:
                    error.message += f" (the previous contents are also in backup {safety.id})"
                raise
    except errors.Interrupted as interrupted:
        if outcome is None:
            raise
        # The restore is complete; a signal during the teardown does not undo it (helpers,
        # restarts and the lock finish their own cleanup before re-raising).
        late_signal = interrupted.signal_name
    assert outcome is not None
    watcher = outcome.watcher
    return RestoreResult(
        backup=record,
        target=target.name,
        target_kind=target.kind,
        created_target=created_target,
        replaced_contents=safety is not None,
        safety_backup=safety,
        restarted_containers=[ref.name for ref in stopped or []],
        transfer=data_path.name,
        setid_files=list(watcher.setid_files),
        setid_count=watcher.setid_count,
        capability_files=list(watcher.capability_files),
        capability_count=watcher.capability_count,
        recovered=recovered,
        signal_after_commit=outcome.signal_name or late_signal,
        old_contents_left=outcome.old_contents_left,
    )


def _safety_recipients(
    context: RunContext,
    request: RestoreRequest,
    record: catalog.BackupRecord,
    identities: list[object],
) -> list[age.Recipient]:
    """Who a forced restore's safety backup is encrypted to: the store's configured
    recipients, else (restoring an encrypted backup) the public keys of the identities given.
    Raise `UsageError` rather than store plaintext next to encrypted backups."""
    if not request.force:
        return []
    recipients = context.recipients(request.from_)
    if recipients or not record.encrypted:
        return recipients
    recipients = age.public_recipients(identities)
    if not recipients:
        raise errors.UsageError(
            "the current contents would be saved unencrypted next to encrypted backups",
            "set encryption.recipients on the target in the config, or use an age identity "
            "file (its public key is used)",
        )
    return recipients


def _remove_created_target(engine: client.Engine, target: volumes.DataSource) -> None:
    """A failed restore removes the volume or directory it created itself (best effort)."""
    try:
        if target.kind == "volume":
            volumes.remove_volume(engine, target.name)
        else:
            os.rmdir(target.name)
    except (errors.OpskitError, OSError) as exc:
        log.warning("could not remove the target this restore created", target=target.name,
                    error=str(exc))  # fmt: skip


def _ensure_target(
    engine: client.Engine, target: volumes.DataSource, record: catalog.BackupRecord
) -> bool:
    """Create a missing target volume (with the backup's labels) or path; return if created."""
    if target.kind == "volume":
        if volumes.volume_exists(engine, target.name):
            return False
        volumes.create_volume(engine, target.name, labels=record.volume_labels)
        return True
    if engine.shares_filesystem and not os.path.isdir(target.name):
        try:
            os.makedirs(target.name, mode=0o700)
        except OSError as exc:
            raise errors.HelperFailed(
                f"cannot create {target.name}: {exc.strerror}", "create it or choose another --into"
            ) from exc
        return True
    return False


def _save_current_contents(
    session: helper.HelperSession,
    data_path: transfer.Transfer,
    storage: Storage,
    target: volumes.DataSource,
    emit: events.EventSink,
    recipients: list[age.Recipient],
) -> catalog.BackupRecord:
    """Back the target's current contents up into the same store, tagged pre-restore (and
    encrypted as the store's backups are)."""
    data_path.check_source(
        session, staging.TARGET_MOUNT_POINT, volumes.host_directory(session.engine, target)
    )
    safety = write_backup(
        session,
        staging.TARGET_MOUNT_POINT,
        data_path,
        storage,
        BackupLabels(
            source=target,
            volume=None,
            compression="zstd",
            tags=[catalog.SAFETY_TAG],
            stopped_containers=[],
            recipients=recipients,
        ),
    )
    emit(events.SafetyBackupSaved(target.describe(), safety.id))
    return safety

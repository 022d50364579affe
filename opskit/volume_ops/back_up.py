"""Back up one mounted source: tar it in a helper container into the store, archive first,
metadata last. The caller holds the source's lock (and stopped its users, if asked)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from opskit import __version__, errors, events
from opskit.archive import age, stage_list
from opskit.archive.pipeline import ArchiveWriter, ProgressCallback
from opskit.engine import client, helper, transfer, volumes
from opskit.log import get_logger
from opskit.repository import catalog
from opskit.storage.base import Storage
from opskit.volume_ops import journal, staging

log = get_logger(__name__)

SOURCE_MOUNT_POINT = "/source"


@dataclass
class BackupOptions:
    """How each source of a run is backed up: shared by backup, snapshot and the daemon."""

    compression: str = "zstd"
    tags: list[str] = field(default_factory=list)
    stop_containers: bool = False
    transfer: str = "auto"
    wait_seconds: float = 0.0  # for another run's lock on a source
    snapshot: str | None = None  # the snapshot id the backups belong to
    stop_at_first_failure: bool = False  # a snapshot: one failed member fails the set
    # More containers to stop with the set (a snapshot: the project's ones that mount nothing
    # of it, e.g. an app server writing to the database over the network).
    also_stop: list[volumes.ContainerRef] = field(default_factory=list)
    recipients: list[age.Recipient] = field(default_factory=list)  # age: encrypt to these


@dataclass
class Member:
    """One source of a set: its name and, for a volume, what the engine says about it."""

    source: volumes.DataSource
    volume: volumes.VolumeInfo | None


def back_up_locked(
    engine: client.Engine,
    storage: Storage,
    image: str,
    member: Member,
    options: BackupOptions,
    stopped: list[str],
    users_running: bool,
    on_progress: ProgressCallback | None = None,
    emit: events.EventSink = events.discard,
) -> catalog.BackupRecord:
    """Given a source whose lock the caller holds (and whose users it stopped, if asked), mount
    it read-only in a helper and write its backup. Return the record.

    An interrupted restore in the source is finished or rolled back first (refused while
    `users_running`). Raise as `write_backup` does; nothing partial is left in the store.
    """
    source = member.source
    with (
        transfer.open_transfer(engine, options.transfer) as data_path,
        helper.helper_session(
            engine,
            image,
            source,
            SOURCE_MOUNT_POINT,
            read_only=True,
            extra_mounts=data_path.mounts(),
        ) as session,
    ):
        if journal.journal_present(session, SOURCE_MOUNT_POINT, source.describe()):
            # Never archive an interrupted restore's staging or old entries: finish it (not
            # under a running app: then this refuses and says how).
            _recover_source(engine, image, source, emit, users_running)
        data_path.check_source(session, SOURCE_MOUNT_POINT, volumes.host_directory(engine, source))
        return write_backup(
            session,
            SOURCE_MOUNT_POINT,
            data_path,
            storage,
            BackupLabels(
                source=source,
                volume=member.volume,
                compression=options.compression,
                tags=options.tags,
                stopped_containers=stopped,
                snapshot=options.snapshot,
                recipients=options.recipients,
            ),
            on_progress,
            emit,
        )


def _recover_source(
    engine: client.Engine,
    image: str,
    source: volumes.DataSource,
    emit: events.EventSink,
    users_running: bool,
) -> None:
    """Finish or roll back the interrupted restore in `source`, in a writable helper."""
    with helper.helper_session(
        engine, image, source, staging.TARGET_MOUNT_POINT, read_only=False
    ) as writable:
        done = staging.recover(writable, source.describe(), users_running)
    if done:
        emit(events.RestoreRecovered(done))


@dataclass
class BackupLabels:
    """What the metadata file says about a backup besides its bytes."""

    source: volumes.DataSource
    volume: volumes.VolumeInfo | None
    compression: str
    tags: list[str]
    stopped_containers: list[str]
    snapshot: str | None = None
    recipients: list[age.Recipient] = field(default_factory=list)  # encrypted with age if any


def write_backup(
    session: helper.HelperSession,
    directory: str,
    data_path: transfer.Transfer,
    storage: Storage,
    labels: BackupLabels,
    on_progress: ProgressCallback | None = None,
    emit: events.EventSink = events.discard,
) -> catalog.BackupRecord:
    """Stream a tar of `directory` in the helper into the store: archive first, metadata last.

    Return the record. On any failure (or interrupt) the archive is aborted or removed.
    """
    started = time.monotonic()
    created = catalog.utc_now()
    backup_id = catalog.new_backup_id(catalog.source_slug(labels.source.name), created)
    stages = stage_list.writer_stages(labels.compression, labels.recipients)
    encrypted = bool(labels.recipients)
    archive_name = catalog.archive_name(backup_id, labels.compression, encrypted)
    log.info("backup.start", source=labels.source.describe(), id=backup_id, to=storage.url)
    fidelity = data_path.fidelity(session)
    writer = storage.create(archive_name)
    try:
        archive = ArchiveWriter(writer, stages, on_progress)
        try:
            data_path.export_tar(session, directory, archive.write)
        except BaseException:
            archive.abort()
            raise
        digest = archive.finish()
    except BaseException:
        writer.abort()
        raise
    try:
        writer.commit()
    except BaseException:
        # An interrupt inside the commit (S3's CompleteMultipartUpload) can leave a whole
        # archive with no metadata: never listed, but stored and billed.
        _remove_quietly(storage, archive_name)
        raise
    record = catalog.BackupRecord(
        id=backup_id,
        source=labels.source.name,
        kind=labels.source.kind,
        created=catalog.iso_utc(created),
        size=digest.size,
        sha256=digest.sha256,
        compression=labels.compression,
        archive=archive_name,
        tags=list(labels.tags),
        tar_size=digest.tar_size,
        volume_driver=labels.volume.driver if labels.volume else None,
        volume_labels=dict(labels.volume.labels) if labels.volume else {},
        stopped_containers=labels.stopped_containers,
        snapshot=labels.snapshot,
        transfer=data_path.name,
        tar=fidelity.writer,
        tar_keeps=list(fidelity.keeps),
        hostname=socket.gethostname(),
        tool_version=__version__,
        stages=[stage.name for stage in stages],
        encryption={
            "format": "age",
            "recipients": [recipient.fingerprint for recipient in labels.recipients],
        }
        if encrypted
        else None,
    )
    try:
        catalog.write_record(storage, record)
    except BaseException:
        _remove_quietly(storage, archive_name)
        raise
    record.location = storage.location(archive_name)
    emit(events.BackupWritten(backup_id, labels.source.describe(), digest.size,
                              round(time.monotonic() - started, 3), record.location))  # fmt: skip
    catalog.refresh_index(storage)
    return record


def _remove_quietly(storage: Storage, name: str) -> None:
    try:
        storage.remove(name)
    except errors.NotFound:
        pass
    except Exception as exc:  # noqa: BLE001 - the original error matters more
        log.error("backup.cleanup_failed", object=name, error=str(exc))

"""`volume backup`: tar a volume or bind path in a helper container into a compressed archive."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import structlog

from opskit import __version__, errors
from opskit.actions import journal, staging
from opskit.actions.session import (
    Notify,
    check_store_outside,
    containers_stopped,
    quiet,
    used_by_others,
)
from opskit.archive import catalog
from opskit.archive.pipeline import ArchiveWriter, ProgressCallback
from opskit.config.schema import Config
from opskit.engine import client, helper, lock, transfer, volumes
from opskit.storage.base import Storage
from opskit.storage.registry import open_storage

log = structlog.get_logger(__name__)

SOURCE_MOUNT_POINT = "/source"


@dataclass
class BackupRequest:
    """What to back up and where. `source` is a volume name or an absolute host path."""

    source: str
    to: str
    compression: str = "zstd"
    tags: list[str] = field(default_factory=list)
    stop_containers: bool = False
    transfer: str = "auto"
    helper_image: str | None = None  # None: the config's helper_image
    docker_host: str | None = None
    wait_seconds: float = 0.0  # for another run's lock on the source


def run_backup(
    request: BackupRequest,
    config: Config,
    on_progress: ProgressCallback | None = None,
    notify: Notify = quiet,
) -> catalog.BackupRecord:
    """Given a request, back the source up into the store. Return the stored backup's record.

    Raise `NotFound` if the source is missing, `TargetLocked` if another run holds its lock,
    `StorageError`/`DiskFull` if the store fails, `FidelityLoss` if the helper's tar would
    change what the source holds, `HelperFailed` if tar fails. Nothing partial is left in the
    store on any failure.
    """
    source = volumes.DataSource.parse(request.source)
    storage = open_storage(request.to, config)
    engine = client.connect(request.docker_host)
    try:
        volume = volumes.check_source_exists(engine, source)
        check_store_outside(engine, storage, source)
        storage.check_writable()
        image = request.helper_image or config.helper_image
        with lock.held(engine, source, "backup", image, request.wait_seconds, notify):
            return _backup_locked(request, image, engine, storage, source, volume, on_progress,
                                  notify)  # fmt: skip
    finally:
        engine.close()
        storage.close()


def _backup_locked(
    request: BackupRequest,
    image: str,
    engine: client.Engine,
    storage: Storage,
    source: volumes.DataSource,
    volume: volumes.VolumeInfo | None,
    on_progress: ProgressCallback | None,
    notify: Notify,
) -> catalog.BackupRecord:
    users = used_by_others(engine, source)
    if users and not request.stop_containers:
        notify(
            f"warning: {source.describe()} is used by running containers "
            f"{', '.join(user.name for user in users)}; the copy may not be consistent "
            "(use --stop-containers)"
        )
    with (
        containers_stopped(engine, users if request.stop_containers else [], notify) as stopped,
        transfer.open_transfer(engine, request.transfer) as data_path,
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
            users_running = bool(users) and not request.stop_containers
            _recover_source(engine, image, source, notify, users_running)
        data_path.check_source(session, SOURCE_MOUNT_POINT, volumes.host_directory(engine, source))
        return write_backup(
            session,
            SOURCE_MOUNT_POINT,
            data_path,
            storage,
            BackupLabels(
                source=source,
                volume=volume,
                compression=request.compression,
                tags=request.tags,
                stopped_containers=[ref.name for ref in stopped],
            ),
            on_progress,
        )


def _recover_source(
    engine: client.Engine,
    image: str,
    source: volumes.DataSource,
    notify: Notify,
    users_running: bool,
) -> None:
    """Finish or roll back the interrupted restore in `source`, in a writable helper."""
    with helper.helper_session(
        engine, image, source, staging.TARGET_MOUNT_POINT, read_only=False
    ) as writable:
        done = staging.recover(writable, source.describe(), users_running)
    if done:
        notify(done)


@dataclass
class BackupLabels:
    """What the metadata file says about a backup besides its bytes."""

    source: volumes.DataSource
    volume: volumes.VolumeInfo | None
    compression: str
    tags: list[str]
    stopped_containers: list[str]


def write_backup(
    session: helper.HelperSession,
    directory: str,
    data_path: transfer.Transfer,
    storage: Storage,
    labels: BackupLabels,
    on_progress: ProgressCallback | None = None,
) -> catalog.BackupRecord:
    """Stream a tar of `directory` in the helper into the store: archive first, metadata last.

    Return the record. On any failure (or interrupt) the archive is aborted or removed.
    """
    created = catalog.utc_now()
    backup_id = catalog.new_backup_id(catalog.source_slug(labels.source.name), created)
    archive_name = catalog.archive_name(backup_id, labels.compression)
    log.info("backup.start", source=labels.source.describe(), id=backup_id, to=storage.url)
    fidelity = data_path.fidelity(session)
    writer = storage.create(archive_name)
    try:
        archive = ArchiveWriter(writer, labels.compression, on_progress)
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
        transfer=data_path.name,
        tar=fidelity.writer,
        tar_keeps=list(fidelity.keeps),
        hostname=socket.gethostname(),
        tool_version=__version__,
    )
    try:
        catalog.write_record(storage, record)
    except BaseException:
        _remove_quietly(storage, archive_name)
        raise
    record.location = storage.location(archive_name)
    log.info("backup.done", id=backup_id, size=digest.size)
    return record


def _remove_quietly(storage: Storage, name: str) -> None:
    try:
        storage.remove(name)
    except errors.NotFound:
        pass
    except Exception as exc:  # noqa: BLE001 - the original error matters more
        log.error("backup.cleanup_failed", object=name, error=str(exc))

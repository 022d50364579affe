"""`volume snapshot`: back up every volume of a compose project as one set (the pre-upgrade path).

The project's volumes are found from the `com.docker.compose.project` label on its containers
and volumes (bind mounts too with `--include-binds`). With `--stop-containers` the project's
running containers are stopped once for the whole set and started again in reverse order, even
on failure. Every member backup carries the snapshot id and the tag; the snapshot record
(repository/snapshots.py) is written last, and only if every member was stored: if one fails,
the members already written are removed, so no partial set is ever left looking complete.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from opskit import __version__, errors, events
from opskit.actions import selection
from opskit.actions.backup_set import SetOutcome, back_up_set
from opskit.actions.context import RunContext
from opskit.archive.pipeline import ProgressCallback
from opskit.config.encryption import Encryption
from opskit.engine import client, volumes
from opskit.log import get_logger
from opskit.repository import catalog, snapshots
from opskit.storage.base import Storage
from opskit.volume_ops.back_up import BackupOptions, Member
from opskit.volume_ops.store_guard import check_store_outside

log = get_logger(__name__)

PROJECT_LABEL = "com.docker.compose.project"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"


@dataclass
class SnapshotRequest:
    project: str
    to: str
    tag: str = snapshots.DEFAULT_TAG
    stop_containers: bool = False
    include_binds: bool = False
    compression: str = "zstd"
    transfer: str = "auto"
    helper_image: str | None = None
    docker_host: str | None = None
    wait_seconds: float = 0.0
    encryption: Encryption = field(default_factory=Encryption)  # none: the target's, if any


@dataclass
class SnapshotResult:
    snapshot: snapshots.SnapshotRecord
    backups: list[catalog.BackupRecord]
    errors: list[str] = field(default_factory=list)  # post hooks, restarts: the set is stored
    hooks: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "snapshot": self.snapshot.to_dict(),
            "backups": [record.to_dict() for record in self.backups],
            "errors": self.errors,
            "hooks": self.hooks,
        }


@dataclass
class ProjectSources:
    """What a project holds: the sources to back up, those skipped (and why), its files."""

    members: list[Member]
    skipped: list[tuple[volumes.DataSource, str]]
    compose_files: list[str]
    working_dir: str
    running: list[volumes.ContainerRef] = field(default_factory=list)  # stopped for the set


def project_sources(
    project_containers: list[volumes.ContainerInfo],
    project_volumes: Iterable[volumes.VolumeInfo],
    volume_info: dict[str, volumes.VolumeInfo],
    include_binds: bool,
) -> ProjectSources:
    """Given the project's containers and labelled volumes (and every volume's info by name),
    return its sources in a stable order: volumes by name, then bind paths; opt-outs skipped."""
    names = {volume.name for volume in project_volumes}
    for container in project_containers:
        names.update(container.volumes)
    sources = [volumes.DataSource("volume", name) for name in sorted(names)]
    if include_binds:
        binds = sorted({bind for container in project_containers for bind in container.binds})
        sources += [volumes.DataSource("path", bind) for bind in binds]
    members, skipped = [], []
    for source in sources:
        info = volume_info.get(source.name) if source.kind == "volume" else None
        reason = selection.opt_out_reason(source, info.labels if info else {}, project_containers)
        if reason:
            skipped.append((source, reason))
        else:
            members.append(Member(source, info))
    files: list[str] = []
    working_dir = ""
    for container in project_containers:
        for name in container.labels.get(CONFIG_FILES_LABEL, "").split(","):
            if name.strip() and name.strip() not in files:
                files.append(name.strip())
        working_dir = working_dir or container.labels.get(WORKING_DIR_LABEL, "")
    running = [
        volumes.ContainerRef(container.id, container.name, False, dict(container.labels))
        for container in project_containers
        if container.running and volumes.HELPER_LABEL not in container.labels
    ]
    return ProjectSources(members, skipped, files, working_dir, running)


def run_snapshot(
    request: SnapshotRequest,
    context: RunContext,
    on_progress: ProgressCallback | None = None,
) -> SnapshotResult:
    """Given a compose project, back up all its volumes as one snapshot. Return the snapshot.

    Raise `NotFound` if no container or volume has the project's label, or it has nothing to
    back up; raise the first failed member's error (its message naming the snapshot) after
    removing the members already written.
    """
    recipients = context.recipients(request.to, request.encryption)
    storage = context.store(request.to)
    engine = context.engine(request.docker_host)
    found = _find_project(engine, request)
    for member in found.members:  # before check_writable creates the store's directory
        check_store_outside(engine, storage, member.source)
    storage.check_writable()
    snapshot_id = snapshots.new_snapshot_id(request.project)
    options = BackupOptions(
        compression=request.compression,
        tags=[request.tag],
        stop_containers=request.stop_containers,
        transfer=request.transfer,
        wait_seconds=request.wait_seconds,
        snapshot=snapshot_id,
        stop_at_first_failure=True,
        also_stop=found.running,
        recipients=recipients,
    )
    for source, reason in found.skipped:
        context.emit(events.SourceSkipped(source.describe(), reason))
    written: list[catalog.BackupRecord] = []
    try:
        image = context.helper_image(request.helper_image)
        outcome = back_up_set(
            engine, storage, image, found.members, options, on_progress, context.emit, written
        )
        _raise_first_failure(outcome, request.project)
        record = snapshots.SnapshotRecord(
            id=snapshot_id,
            project=request.project,
            created=catalog.iso_utc(catalog.utc_now()),
            tags=[request.tag],
            members=[
                snapshots.SnapshotMember(backup.id, backup.source, backup.kind)
                for backup in outcome.backed_up()
            ],
            skipped=[
                {"source": source.name, "kind": source.kind, "reason": reason}
                for source, reason in found.skipped
            ],
            compose_files=found.compose_files,
            working_dir=found.working_dir,
            stopped_containers=outcome.stopped_containers,
            hostname=socket.gethostname(),
            tool_version=__version__,
        )
        snapshots.write_snapshot(storage, record)
    except BaseException as failure:
        removed = _remove_members(storage, written)
        if removed and isinstance(failure, errors.OpskitError):
            failure.message += f"; removed the {removed} member backups already written"
        raise
    log.info("snapshot.done", id=snapshot_id, members=len(record.members))
    return SnapshotResult(
        snapshot=record,
        backups=outcome.backed_up(),
        errors=outcome.errors,
        hooks=[hook.to_dict() for hook in outcome.hooks],
    )


def _find_project(engine: client.Engine, request: SnapshotRequest) -> ProjectSources:
    label = f"{PROJECT_LABEL}={request.project}"
    containers = volumes.list_containers(engine, label=label)
    every_volume = volumes.list_volumes(engine)
    labelled = [item for item in every_volume if item.labels.get(PROJECT_LABEL) == request.project]
    if not containers and not labelled:
        raise errors.NotFound(
            f"no containers or volumes of compose project {request.project}",
            f"check the name: docker ps -a --filter label={label}",
        )
    found = project_sources(
        containers, labelled, {item.name: item for item in every_volume}, request.include_binds
    )
    if not found.members:
        raise errors.NotFound(
            f"compose project {request.project} has nothing to back up"
            + (f" ({len(found.skipped)} opted out)" if found.skipped else ""),
            "bind mounts are taken with --include-binds",
        )
    return found


def _raise_first_failure(outcome: SetOutcome, project: str) -> None:
    failed = [item for item in outcome.outcomes if item.error is not None]
    for item in sorted(failed, key=lambda item: item.not_attempted):
        if item.error is not None:
            error = item.error
            what = item.source.describe()
            named = error.message if what in error.message else f"{what}: {error.message}"
            error.message = f"snapshot of project {project} failed: {named}"
            raise error


def _remove_members(storage: Storage, written: list[catalog.BackupRecord]) -> int:
    """Remove the member backups of a failed snapshot: metadata first, then the archive (a
    listed backup never lacks its archive). Return how many were removed."""
    removed = 0
    for record in written:
        try:
            catalog.remove_backup(storage, record)
            removed += 1
        except errors.OpskitError as exc:
            log.error("snapshot.cleanup_failed", backup=record.id, error=str(exc))
    return removed

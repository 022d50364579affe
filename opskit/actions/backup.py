"""`volume backup`: tar volumes or bind paths in a helper container into compressed archives.

`back_up_set` is the one way sources are backed up (one source, several, `--all`, a compose
project's snapshot): every source under its lock, the users stopped once for the whole set,
hooks around it; `back_up_locked` backs up one locked source.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from opskit import __version__, errors
from opskit.actions import journal, selection, staging
from opskit.actions.session import (
    Notify,
    check_store_outside,
    containers_stopped,
    quiet,
    used_by_others,
)
from opskit.archive.pipeline import ArchiveWriter, ProgressCallback
from opskit.config.schema import Config
from opskit.engine import client, helper, hooks, lock, transfer, volumes
from opskit.repository import catalog
from opskit.storage.base import Storage
from opskit.storage.registry import open_storage

log = structlog.get_logger(__name__)

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

    def options(self) -> BackupOptions:
        return BackupOptions(
            compression=self.compression,
            tags=list(self.tags),
            stop_containers=self.stop_containers,
            transfer=self.transfer,
            wait_seconds=self.wait_seconds,
        )


@dataclass
class BackupManyRequest:
    """Several sources (`sources`, or every volume with `all_volumes`, narrowed by `labels`
    of the form KEY=VALUE or KEY) into the store `to`."""

    sources: list[str]
    to: str
    all_volumes: bool = False
    labels: list[str] = field(default_factory=list)
    options: BackupOptions = field(default_factory=BackupOptions)
    helper_image: str | None = None
    docker_host: str | None = None


BACKED_UP, FAILED, SKIPPED = "backed-up", "failed", "skipped"


@dataclass
class SourceOutcome:
    """What became of one source of a run: backed up (with its record), failed or skipped."""

    source: volumes.DataSource
    status: str = FAILED
    record: catalog.BackupRecord | None = None
    reason: str = ""  # why it failed or was skipped (one line)
    error: errors.OpskitError | None = None  # the failure, for callers that re-raise it
    hooks: list[hooks.HookResult] = field(default_factory=list)
    not_attempted: bool = False  # failed because another member of its set failed

    def fail(self, error: errors.OpskitError) -> None:
        self.status, self.error, self.reason = FAILED, error, str(error)

    def to_dict(self) -> dict:
        return {
            "source": self.source.name,
            "kind": self.source.kind,
            "status": self.status,
            "reason": self.reason,
            "backup": self.record.to_dict() if self.record else None,
            "hooks": [hook.to_dict() for hook in self.hooks],
        }


@dataclass
class SetOutcome:
    """A run over several sources: each one's outcome, and the run's own errors (a post hook
    that failed, a container that did not start again), which do not undo any backup."""

    outcomes: list[SourceOutcome]
    errors: list[str] = field(default_factory=list)
    stopped_containers: list[str] = field(default_factory=list)
    hooks: list[hooks.HookResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(item.status != FAILED for item in self.outcomes)

    def backed_up(self) -> list[catalog.BackupRecord]:
        return [item.record for item in self.outcomes if item.record is not None]


def run_backup(
    request: BackupRequest,
    config: Config,
    on_progress: ProgressCallback | None = None,
    notify: Notify = quiet,
) -> catalog.BackupRecord:
    """Given a request, back the source up into the store. Return the stored backup's record.

    Raise `NotFound` if the source is missing, `TargetLocked` if another run holds its lock,
    `StorageError`/`DiskFull` if the store fails, `FidelityLoss` if the helper's tar would
    change what the source holds, `HelperFailed` if tar or a pre hook fails, `EngineError` if
    a post hook fails or a stopped container does not start again (the backup is stored).
    Nothing partial is left in the store on any failure.
    """
    many = BackupManyRequest(
        sources=[request.source],
        to=request.to,
        options=request.options(),
        helper_image=request.helper_image,
        docker_host=request.docker_host,
    )
    outcome = run_backups(many, config, on_progress, notify)
    single = outcome.outcomes[0]
    if single.error is not None:
        raise single.error
    if outcome.errors:
        raise errors.EngineError("; ".join(outcome.errors))
    assert single.record is not None
    return single.record


def run_backups(
    request: BackupManyRequest,
    config: Config,
    on_progress: ProgressCallback | None = None,
    notify: Notify = quiet,
) -> SetOutcome:
    """Given several sources (or `--all` with label filters), back up each into the store.

    Return every source's outcome: a source that fails does not stop the others. Raise
    `UsageError` for contradictory selections, `NotFound` if `--all` selects nothing, and
    `StorageError` if the store cannot be written at all.
    """
    if request.all_volumes and request.sources:
        raise errors.UsageError("give volume names or --all, not both")
    if request.labels and not request.all_volumes:
        raise errors.UsageError("--label selects among --all", "add --all")
    if not request.all_volumes and not request.sources:
        raise errors.UsageError("name a volume or path to back up, or pass --all")
    filters = [selection.LabelFilter.parse(text) for text in request.labels]
    storage = open_storage(request.to, config)
    engine = client.connect(request.docker_host)
    try:
        skipped: list[SourceOutcome] = []
        named: list[volumes.DataSource] = []
        candidates: list[Member] = []
        failed: list[SourceOutcome] = []
        if request.all_volumes:
            chosen = selection.all_volumes(
                volumes.list_volumes(engine), volumes.list_containers(engine), filters
            )
            if not chosen:
                wanted = " ".join(f"--label {text}" for text in request.labels)
                raise errors.NotFound(
                    f"no volumes to back up{' match ' + wanted if wanted else ''}",
                    "check the labels with: docker volume ls --format '{{.Name}} {{.Labels}}'",
                )
            for candidate in chosen:
                if candidate.skipped:
                    skipped.append(
                        SourceOutcome(candidate.source, SKIPPED, reason=candidate.skipped)
                    )
                else:
                    candidates.append(Member(candidate.source, candidate.volume))
        else:
            named = _unique_sources(request.sources)
            for source in named:
                try:
                    candidates.append(Member(source, volumes.check_source_exists(engine, source)))
                except errors.OpskitError as error:
                    outcome = SourceOutcome(source)
                    outcome.fail(error)
                    failed.append(outcome)
        # Before the store is made (check_writable creates a directory): never inside a source.
        for member in list(candidates):
            try:
                check_store_outside(engine, storage, member.source)
            except errors.OpskitError as error:
                candidates.remove(member)
                outcome = SourceOutcome(member.source)
                outcome.fail(error)
                failed.append(outcome)
        if candidates:
            storage.check_writable()
        image = request.helper_image or config.helper_image
        result = back_up_set(
            engine, storage, image, candidates, request.options, on_progress, notify
        )
        # Report in the order asked for (with --all: by volume name).
        position = {source: index for index, source in enumerate(named)}
        every = [*result.outcomes, *failed, *skipped]
        every.sort(key=lambda item: (position.get(item.source, 0), item.source.name))
        result.outcomes = every
        return result
    finally:
        engine.close()
        storage.close()


@dataclass
class Member:
    """One source of a set: its name and, for a volume, what the engine says about it."""

    source: volumes.DataSource
    volume: volumes.VolumeInfo | None


def back_up_set(
    engine: client.Engine,
    storage: Storage,
    image: str,
    members: list[Member],
    options: BackupOptions,
    on_progress: ProgressCallback | None = None,
    notify: Notify = quiet,
    written: list[catalog.BackupRecord] | None = None,
) -> SetOutcome:
    """Given existing sources, back each up under its lock; the containers using them are
    stopped once for the whole set (with `options.stop_containers`) and started again in
    reverse order, even on failure.

    Pre hooks of the running users run before anything is stopped or read; post hooks after
    the restarts, with `OPSKIT_BACKUP_RESULT`. A pre hook's failure fails the sources its
    container mounts. Return every member's outcome; with `options.stop_at_first_failure`,
    the members after a failure are failed as "not attempted". Each stored record is also
    appended to `written` at once, so a caller can remove a set cut short by a signal.
    """
    outcomes = {member.source: SourceOutcome(member.source) for member in members}
    result = SetOutcome(list(outcomes.values()))

    def given_up() -> bool:
        return options.stop_at_first_failure and any(
            item.error is not None for item in outcomes.values()
        )

    def not_attempted(member: Member) -> None:
        outcomes[member.source].fail(
            errors.OpskitError(f"{member.source.describe()} was not backed up: another failed")
        )
        outcomes[member.source].not_attempted = True

    with contextlib.ExitStack() as locks:
        users: dict[volumes.DataSource, list[volumes.ContainerRef]] = {}
        live: list[Member] = []
        for member in members:
            if given_up():
                not_attempted(member)
                continue
            try:
                check_store_outside(engine, storage, member.source)
                locks.enter_context(lock.held(engine, member.source, "backup", image,
                                              options.wait_seconds, notify))  # fmt: skip
                users[member.source] = used_by_others(engine, member.source)
                live.append(member)
            except errors.OpskitError as error:
                outcomes[member.source].fail(error)
        hook_containers = _unique([ref for member in live for ref in users[member.source]])
        pre_hooks_run: set[str] = set()
        try:
            for ref in hook_containers:
                if given_up():
                    break
                pre_hooks_run.add(ref.id)  # first: a Ctrl-C inside it still runs the post hook
                _run_pre_hook(engine, ref, [m for m in live if ref in users[m.source]],
                              outcomes, result, notify)  # fmt: skip
            ready = [m for m in live if outcomes[m.source].error is None]
            # A snapshot stops its users once for the set; several sources stop theirs per
            # group of sources that share a container, so that no service is down for the
            # sum of all the backups and none is stopped twice.
            batches = [ready] if options.snapshot else _sharing_groups(ready, users)
            for batch in batches:
                _back_up_ready(engine, storage, image, batch, users, options, outcomes, result,
                               given_up, not_attempted, on_progress, notify,
                               written if written is not None else [])  # fmt: skip
        finally:
            # A post hook undoes what its pre hook did: never one whose pre hook did not run.
            post_hooks_due = [
                ref
                for ref in hook_containers
                if hooks.hook_command(ref.labels, "post")
                and (ref.id in pre_hooks_run or not hooks.hook_command(ref.labels, "pre"))
            ]
            for ref in post_hooks_due:
                mounted = [m for m in live if ref in users[m.source]]
                _run_post_hook(engine, ref, mounted, outcomes, result, notify)
    return result


def _sharing_groups(
    members: list[Member], users: dict[volumes.DataSource, list[volumes.ContainerRef]]
) -> list[list[Member]]:
    """Split `members` into groups whose sources share no running user, in their order."""
    groups: list[tuple[set[str], list[Member]]] = []
    for member in members:
        ids = {ref.id for ref in users[member.source]}
        joined = [group for group in groups if group[0] & ids]
        for group in joined:
            groups.remove(group)
            ids |= group[0]
        together = [m for group in joined for m in group[1]] + [member]
        groups.append((ids, sorted(together, key=members.index)))
    return sorted((group for _, group in groups), key=lambda group: members.index(group[0]))


def _back_up_ready(
    engine: client.Engine,
    storage: Storage,
    image: str,
    ready: list[Member],
    users: dict[volumes.DataSource, list[volumes.ContainerRef]],
    options: BackupOptions,
    outcomes: dict[volumes.DataSource, SourceOutcome],
    result: SetOutcome,
    given_up: Callable[[], bool],
    not_attempted: Callable[[Member], None],
    on_progress: ProgressCallback | None,
    notify: Notify,
    written: list[catalog.BackupRecord],
) -> None:
    """Stop the users of `ready` once, back each up, start the users again."""
    if given_up():
        for member in ready:
            not_attempted(member)
        return
    to_stop = _unique([ref for member in ready for ref in users[member.source]])
    if options.stop_containers and ready:
        to_stop = _unique([*to_stop, *options.also_stop])
    if to_stop and not options.stop_containers:
        for member in ready:
            if users[member.source]:
                notify(
                    f"warning: {member.source.describe()} is used by running containers "
                    f"{', '.join(user.name for user in users[member.source])}; the copy may "
                    "not be consistent (use --stop-containers)"
                )
    attempted: list[Member] = []
    try:
        with containers_stopped(engine, to_stop if options.stop_containers else [],
                                notify) as stopped:  # fmt: skip
            result.stopped_containers += [ref.name for ref in stopped]
            for member in ready:
                attempted.append(member)
                if given_up():
                    not_attempted(member)
                    continue
                outcome = outcomes[member.source]
                member_users = users[member.source]
                try:
                    outcome.record = back_up_locked(
                        engine,
                        storage,
                        image,
                        member,
                        options,
                        stopped=[ref.name for ref in stopped if ref in member_users],
                        users_running=bool(member_users) and not options.stop_containers,
                        on_progress=on_progress,
                        notify=notify,
                    )
                    written.append(outcome.record)
                    outcome.status, outcome.error, outcome.reason = BACKED_UP, None, ""
                except errors.OpskitError as error:
                    outcome.fail(error)
    except errors.OpskitError as error:
        # Stopping failed (nothing of the rest was read), or starting again failed (the
        # backups are stored; the containers are not running).
        for member in ready:
            if member not in attempted:
                outcomes[member.source].fail(error)
        result.errors.append(str(error))


def _run_pre_hook(
    engine: client.Engine,
    ref: volumes.ContainerRef,
    mounted: list[Member],
    outcomes: dict[volumes.DataSource, SourceOutcome],
    result: SetOutcome,
    notify: Notify,
) -> None:
    """Run `ref`'s pre hook, if it has one; its failure fails the sources it mounts."""
    command = hooks.hook_command(ref.labels, "pre")
    if command is None:
        return
    try:
        timeout = hooks.hook_timeout(ref.labels)
    except errors.UsageError as error:
        for member in mounted:
            outcomes[member.source].fail(error)
        return
    notify(f"running the pre hook of container {ref.name}")
    ran = hooks.run_hook(engine, ref, "pre", command, {hooks.PHASE_VARIABLE: "pre"}, timeout)
    result.hooks.append(ran)
    for member in mounted:
        outcomes[member.source].hooks.append(ran)
        if not ran.ok:
            outcomes[member.source].fail(
                errors.HelperFailed(f"{member.source.describe()} not backed up: {ran.describe()}")
            )


def _run_post_hook(
    engine: client.Engine,
    ref: volumes.ContainerRef,
    mounted: list[Member],
    outcomes: dict[volumes.DataSource, SourceOutcome],
    result: SetOutcome,
    notify: Notify,
) -> None:
    """Run `ref`'s post hook with the outcome of the sources it mounts; its failure is an error
    of the run, never of a stored backup."""
    command = hooks.hook_command(ref.labels, "post")
    assert command is not None
    succeeded = all(outcomes[member.source].status == BACKED_UP for member in mounted)
    try:
        timeout = hooks.hook_timeout(ref.labels)
    except errors.UsageError as error:
        result.errors.append(str(error))
        return
    environment = {
        hooks.PHASE_VARIABLE: "post",
        hooks.RESULT_VARIABLE: "success" if succeeded else "failure",
    }
    notify(f"running the post hook of container {ref.name}")
    ran = hooks.run_hook(engine, ref, "post", command, environment, timeout)
    result.hooks.append(ran)
    for member in mounted:
        outcomes[member.source].hooks.append(ran)
    if not ran.ok:
        result.errors.append(ran.describe())


def _unique_sources(texts: list[str]) -> list[volumes.DataSource]:
    """The sources named, each once (a second lock on the same one would fail the run)."""
    return list(dict.fromkeys(volumes.DataSource.parse(text) for text in texts))


def _unique(refs: list[volumes.ContainerRef]) -> list[volumes.ContainerRef]:
    """`refs` without repeats, in their first order."""
    seen: dict[str, volumes.ContainerRef] = {}
    for ref in refs:
        seen.setdefault(ref.id, ref)
    return list(seen.values())


def back_up_locked(
    engine: client.Engine,
    storage: Storage,
    image: str,
    member: Member,
    options: BackupOptions,
    stopped: list[str],
    users_running: bool,
    on_progress: ProgressCallback | None = None,
    notify: Notify = quiet,
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
            _recover_source(engine, image, source, notify, users_running)
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
    snapshot: str | None = None


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
        snapshot=labels.snapshot,
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

"""`volume backup`: tar volumes or bind paths in a helper container into compressed archives.

This action picks the sources (named ones, or `--all` with label filters) and hands them to
`backup_set.back_up_set`, the one way sources are backed up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from opskit import errors
from opskit.actions import selection
from opskit.actions.backup_set import SKIPPED, SetOutcome, SourceOutcome, back_up_set
from opskit.actions.context import RunContext
from opskit.archive.pipeline import ProgressCallback
from opskit.config.encryption import Encryption
from opskit.engine import volumes
from opskit.repository import catalog
from opskit.volume_ops.back_up import BackupOptions, Member
from opskit.volume_ops.store_guard import check_store_outside


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
    encryption: Encryption = field(default_factory=Encryption)  # none: the target's, if any


def run_backup(
    request: BackupRequest,
    context: RunContext,
    on_progress: ProgressCallback | None = None,
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
    outcome = run_backups(many, context, on_progress)
    single = outcome.outcomes[0]
    if single.error is not None:
        raise single.error
    if outcome.errors:
        raise errors.EngineError("; ".join(outcome.errors))
    assert single.record is not None
    return single.record


def run_backups(
    request: BackupManyRequest,
    context: RunContext,
    on_progress: ProgressCallback | None = None,
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
    options = dataclasses.replace(
        request.options, recipients=context.recipients(request.to, request.encryption)
    )
    storage = context.store(request.to)
    engine = context.engine(request.docker_host)
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
                skipped.append(SourceOutcome(candidate.source, SKIPPED, reason=candidate.skipped))
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
    image = context.helper_image(request.helper_image)
    result = back_up_set(engine, storage, image, candidates, options, on_progress, context.emit)
    # Report in the order asked for (with --all: by volume name).
    position = {source: index for index, source in enumerate(named)}
    every = [*result.outcomes, *failed, *skipped]
    every.sort(key=lambda item: (position.get(item.source, 0), item.source.name))
    result.outcomes = every
    return result


def _unique_sources(texts: list[str]) -> list[volumes.DataSource]:
    """The sources named, each once (a second lock on the same one would fail the run)."""
    return list(dict.fromkeys(volumes.DataSource.parse(text) for text in texts))

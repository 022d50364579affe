"""`volume verify`: the restore drill. Prove that a backup restores, entry by entry.

For each chosen backup:
1. archive: read the stored archive whole; it must match its recorded size and sha256 and
   decompress to a complete tar (end marker included), listed as it streams past
   (archive/listing.py: one small record per entry, contents hashed, never kept);
2. restore: through the normal restore path (actions/restore.py) into a new, empty scratch
   volume labelled `io.opskit.scratch=1`;
3. compare: the scratch volume is read back as a tar by the same transfer a backup uses,
   listed by the same lister, and the two listings are compared by path (what both tars keep
   decides what is compared: see listing.compare);
4. check (optional): the user's image runs the user's command with the scratch volume at
   /data; a non-zero exit fails the drill;
5. clean up: the scratch volume is always removed, even on failure or Ctrl-C.

The outcome is written into the backup's metadata (`verified_at`, `verified_ok`,
`verified_reason`). Failures of the backup itself (checksum, truncation, unsafe or unreadable
entries, differences, a failing check) are outcomes; failures of the machinery (engine or
store unreachable, a full disk, Ctrl-C) are raised and recorded nowhere.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from opskit import errors, events, untrusted
from opskit.actions.context import RunContext
from opskit.actions.restore import RestoreRequest, run_restore
from opskit.archive import listing
from opskit.archive.pipeline import HashingReader, tar_chunks, verify_digest
from opskit.archive.threads import ReadAhead
from opskit.engine import check, client, helper, transfer, volumes
from opskit.engine.orphans import OWNER_LABEL, SCRATCH_LABEL
from opskit.log import get_logger
from opskit.process_owner import owner_label
from opskit.repository import catalog
from opskit.storage.base import Storage
from opskit.volume_ops import staging

log = get_logger(__name__)

SCRATCH_OF_LABEL = "io.opskit.scratch.backup"  # the backup id a scratch volume holds
CHECK_MOUNT_POINT = "/data"
SCRATCH_MOUNT_POINT = "/data"
SHOWN_DIFFERENCES = 20  # differences kept in the result (all are counted)
REASON_DIFFERENCES = 3  # differences named in the recorded reason
MAX_REASON = 500  # characters of the recorded reason
SELECTIONS = ("latest", "all")


@dataclass
class VerifyRequest:
    """Which backups in the store `from_` to verify: of `volume` (every source if None), the
    backup `backup` (an id, `latest` or `all`); and the optional application check."""

    from_: str
    volume: str | None = None
    backup: str = "latest"
    check_image: str | None = None
    check_command: list[str] = field(default_factory=list)
    check_user: str | None = None
    check_timeout: float = 600.0
    transfer: str = "auto"
    helper_image: str | None = None
    docker_host: str | None = None
    allow_devices: bool = False
    host: str | None = None  # another host's part of a target with host prefixes


@dataclass
class BackupVerification:
    """The drill of one backup. Each step is `passed`, `failed` or `skipped`."""

    backup_id: str
    source: str
    ok: bool = False
    reason: str = ""
    verified_at: str = ""
    steps: dict[str, str] = field(
        default_factory=lambda: dict.fromkeys(("archive", "restore", "compare", "check"), "skipped")
    )
    entries: int = 0  # entries in the archive
    compared: list[str] = field(default_factory=list)  # what both tars keep beyond the basics
    differences: list[str] = field(default_factory=list)  # the first SHOWN_DIFFERENCES
    difference_count: int = 0
    check_output: list[str] = field(default_factory=list)  # last lines of a failed check
    scratch_volume: str = ""
    recorded: bool = False  # whether the outcome was written into the backup's metadata
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class VerifyResult:
    verifications: list[BackupVerification] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(verification.ok for verification in self.verifications)

    @property
    def failed(self) -> list[BackupVerification]:
        return [verification for verification in self.verifications if not verification.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verified": len(self.verifications),
            "failed": len(self.failed),
            "backups": [verification.to_dict() for verification in self.verifications],
        }


class _DrillFailed(Exception):
    """A step found the backup wanting; `step` names it, the message says how."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        super().__init__(message)


def run_verify(request: VerifyRequest, context: RunContext) -> VerifyResult:
    """Given a request, run the restore drill on each chosen backup and record each outcome in
    its metadata. Return the outcomes (failed drills are outcomes, not exceptions).

    Without `volume`, `latest` is the latest backup of every source in the store, and `all` is
    every backup in it. Raise `NotFound` if there is nothing to verify (or the check image is
    missing), `MetadataCorrupt` as `find_record` does, `UsageError` for a check image without
    a command; engine, store and helper errors and `Interrupted` as they come, after removing
    the scratch volume.
    """
    if bool(request.check_image) != bool(request.check_command):
        raise errors.UsageError(
            "--check-image and --check-cmd go together", "give both, or neither"
        )
    storage = context.store(request.from_, request.host)
    if request.host is None:  # never another host's in-progress files
        storage.remove_leftovers()
    records = _chosen(storage, request)
    engine = context.engine(request.docker_host)
    if request.check_image:
        check.require_image(engine, request.check_image)
    result = VerifyResult()
    for record in records:
        # A missing or wrong identity is the run's error, never a failed drill of the backup.
        identities = context.identities(request.from_) if record.encrypted else []
        staging.check_decryptable(storage, record, identities)
        context.emit(events.VerifyStarting(untrusted.printable(record.id)))
        verification = _verify_one(request, context, engine, storage, record, identities)
        verification.recorded = _record(storage, record, verification, context.emit)
        context.emit(events.Verified(verification.backup_id, verification.source,
                                     verification.ok, verification.reason))  # fmt: skip
        result.verifications.append(verification)
    if any(verification.recorded for verification in result.verifications):
        catalog.refresh_index(storage)  # once for the run: each refresh lists the whole store
    return result


def _chosen(storage: Storage, request: VerifyRequest) -> list[catalog.BackupRecord]:
    """The backups the request names, oldest first. Raise `NotFound` if there are none."""
    source = volumes.DataSource.parse(request.volume).name if request.volume else None
    shown_url = untrusted.printable(storage.url)
    listing_ = catalog.list_records(storage, source)
    if request.backup == "all":
        records = list(listing_)
    elif request.backup == "latest":
        sources = [source] if source else sorted({record.source for record in listing_})
        records = [catalog.find_record(storage, name, "latest") for name in sources]
    elif source is not None:
        records = [catalog.find_record(storage, source, request.backup)]
    else:
        records = [record for record in listing_ if record.id == request.backup]
        if not records:
            raise errors.NotFound(
                f"no backup {untrusted.printable(request.backup)} in {shown_url}",
                "list them with: opskit volume list --from " + shown_url,
            )
    if not records:
        of = f" of {untrusted.printable(source)}" if source else ""
        raise errors.NotFound(f"no backups{of} in {shown_url}", "check --volume and --from")
    return records


def _verify_one(
    request: VerifyRequest,
    context: RunContext,
    engine: client.Engine,
    storage: Storage,
    record: catalog.BackupRecord,
    identities: list[object],
) -> BackupVerification:
    started = time.monotonic()
    verification = BackupVerification(backup_id=record.id, source=record.source)
    try:
        archive = _list_archive(storage, record, identities)
        verification.steps["archive"] = "passed"
        verification.entries = len(archive.entries)
        _drill(request, context, engine, record, archive, verification)
        verification.ok = True
        verification.reason = _passed_reason(verification)
    except _DrillFailed as failure:
        verification.steps[failure.step] = "failed"
        verification.reason = f"{failure.step}: {failure}"
    verification.reason = untrusted.printable(verification.reason)[:MAX_REASON]
    verification.verified_at = catalog.iso_utc(catalog.utc_now())
    verification.seconds = round(time.monotonic() - started, 3)
    return verification


def _list_archive(
    storage: Storage, record: catalog.BackupRecord, identities: list[object]
) -> listing.TarListing:
    """Read the whole stored archive: check its size and sha256, decompress it, list it.
    Raise `_DrillFailed` if it is missing, altered, truncated or not a tar."""
    try:
        with storage.open(record.archive) as stream:
            stored = HashingReader(stream)
            read_ahead = ReadAhead(stored)
            chunks = tar_chunks(
                read_ahead, staging.reader_stages(record, identities), record.archive
            )
            lister = listing.TarLister(record.archive)
            try:
                for chunk in chunks:
                    lister.feed(chunk)
            except errors.ArchiveCorrupt:
                # A damaged stream is most clearly named by its checksum, if that differs.
                _read_to_end(stored)
                verify_digest(stored, record.sha256, record.size, record.archive)
                raise
            finally:
                _stop(chunks, read_ahead)
            verify_digest(stored, record.sha256, record.size, record.archive)
            return lister.finish()
    except errors.NotFound as exc:
        raise _DrillFailed("archive", f"the archive {record.archive} is missing ({exc})") from exc
    except errors.ArchiveCorrupt as exc:  # ChecksumMismatch included
        raise _DrillFailed("archive", exc.message) from exc


def _stop(chunks: object, read_ahead: ReadAhead) -> None:
    """Stop the decompressing thread, then the reading one (the first reads the second)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
    read_ahead.close()


def _read_to_end(stored: HashingReader) -> None:
    while stored.read(1 << 20):
        pass


def _drill(
    request: VerifyRequest,
    context: RunContext,
    engine: client.Engine,
    record: catalog.BackupRecord,
    archive: listing.TarListing,
    verification: BackupVerification,
) -> None:
    """Restore into a scratch volume, compare, check; always remove the scratch volume."""
    scratch = _scratch_name(record.id)
    verification.scratch_volume = scratch
    created = False
    try:
        # The owner label lets a later run tell a scratch volume of a killed run (SIGKILL).
        labels = {SCRATCH_LABEL: "1", SCRATCH_OF_LABEL: record.id, OWNER_LABEL: owner_label()}
        volumes.create_volume(engine, scratch, labels=labels)
        created = True
        _restore(request, context, record, scratch)
        verification.steps["restore"] = "passed"
        _compare(request, context, engine, record, archive, scratch, verification)
        verification.steps["compare"] = "passed"
        if request.check_image:
            _check(request, engine, scratch, verification)
            verification.steps["check"] = "passed"
    finally:
        if created:
            _remove_scratch(engine, scratch)


def _scratch_name(backup_id: str) -> str:
    return f"opskit-verify-{catalog.source_slug(backup_id)[:60]}-{secrets.token_hex(4)}"


def _restore(
    request: VerifyRequest,
    context: RunContext,
    record: catalog.BackupRecord,
    scratch: str,
) -> None:
    restore_request = RestoreRequest(
        source=record.source,
        from_=request.from_,
        backup=record.id,
        into=scratch,
        transfer=request.transfer,
        helper_image=request.helper_image,
        docker_host=request.docker_host,
        allow_devices=request.allow_devices,
        host=request.host,
    )
    try:
        restored = run_restore(restore_request, context)
    except (errors.ArchiveCorrupt, errors.ArchiveUnsafe, errors.NotFound) as exc:
        raise _DrillFailed("restore", exc.message) from exc
    except errors.HelperFailed as exc:
        if any(problem in exc.message for problem in staging.TARGET_PROBLEMS):
            raise  # the scratch volume's disk, not the backup
        raise _DrillFailed("restore", exc.message) from exc
    if restored.signal_after_commit:
        # The restore finished its swap before answering the signal; the drill stops here
        # (its scratch volume is removed on the way out), as the signal asked.
        raise errors.Interrupted(restored.signal_after_commit)


def _compare(
    request: VerifyRequest,
    context: RunContext,
    engine: client.Engine,
    record: catalog.BackupRecord,
    archive: listing.TarListing,
    scratch: str,
    verification: BackupVerification,
) -> None:
    """Read the scratch volume back as a tar, list it, and compare it with the archive's."""
    image = context.helper_image(request.helper_image)
    lister = listing.TarLister(f"the restored volume {scratch}")
    with transfer.open_transfer(engine, request.transfer) as data_path:
        with helper.helper_session(
            engine,
            image,
            volumes.DataSource("volume", scratch),
            SCRATCH_MOUNT_POINT,
            read_only=True,
            extra_mounts=data_path.mounts(),
        ) as session:
            keeps = data_path.fidelity(session).keeps
            data_path.export_tar(session, SCRATCH_MOUNT_POINT, lister.feed)
    restored = lister.finish()
    common = [token for token in record.tar_keeps if token in keeps]
    verification.compared = common
    differences = listing.compare(archive, restored, common)
    verification.difference_count = len(differences)
    verification.differences = [str(difference) for difference in differences[:SHOWN_DIFFERENCES]]
    if differences:
        named = "; ".join(verification.differences[:REASON_DIFFERENCES])
        more = len(differences) - REASON_DIFFERENCES
        raise _DrillFailed(
            "compare",
            f"{len(differences)} difference{'s' if len(differences) != 1 else ''} between the "
            f"archive and the restored tree: {named}" + (f" (and {more} more)" if more > 0 else ""),
        )


def _check(
    request: VerifyRequest,
    engine: client.Engine,
    scratch: str,
    verification: BackupVerification,
) -> None:
    assert request.check_image is not None
    outcome = check.run_check(
        engine,
        request.check_image,
        request.check_command,
        scratch,
        CHECK_MOUNT_POINT,
        request.check_timeout,
        request.check_user,
    )
    if outcome.passed:
        return
    verification.check_output = outcome.output_tail
    last = outcome.output_tail[-1] if outcome.output_tail else "no output"
    if outcome.timed_out:
        raise _DrillFailed(
            "check", f"the check ran longer than {request.check_timeout:g} s (last: {last})"
        )
    raise _DrillFailed("check", f"the check exited {outcome.exit_code}: {last}")


def _remove_scratch(engine: client.Engine, scratch: str) -> None:
    """Remove the scratch volume; a second Ctrl-C meanwhile must not leak it. A failure is
    logged (naming the volume), never raised over the error that got us here."""
    try:
        _remove_scratch_once(engine, scratch)
    except errors.Interrupted:
        _remove_scratch_once(engine, scratch)
        raise


def _remove_scratch_once(engine: client.Engine, scratch: str) -> None:
    try:
        volumes.remove_volume(engine, scratch)
    except errors.NotFound:
        pass
    except errors.OpskitError as exc:
        client.cleanup_failed(log, "verify.scratch_not_removed", exc, volume=scratch)


def _passed_reason(verification: BackupVerification) -> str:
    checked = ", application check passed" if verification.steps["check"] == "passed" else ""
    return f"{verification.entries} entries restored and compared{checked}"


def _record(
    storage: Storage,
    record: catalog.BackupRecord,
    verification: BackupVerification,
    emit: events.EventSink,
) -> bool:
    """Write the outcome into the backup's metadata; return whether it was written. A backup
    removed meanwhile (prune, delete) stays removed: its metadata is not written again."""
    try:
        storage.stat(catalog.metadata_name(record.id))
    except errors.NotFound:
        emit(events.VerificationNotRecorded(untrusted.printable(record.id)))
        return False
    updated = dataclasses.replace(
        record,
        verified_at=verification.verified_at,
        verified_ok=verification.ok,
        verified_reason=verification.reason,
    )
    catalog.write_record(storage, updated)
    try:
        # A prune or delete may have removed the backup (metadata, then archive) since the
        # stat above: the metadata just written would list a backup without its archive.
        storage.stat(record.archive)
    except errors.NotFound:
        _remove_quietly(storage, catalog.metadata_name(record.id))
        emit(events.VerificationNotRecorded(untrusted.printable(record.id)))
        return False
    return True


def _remove_quietly(storage: Storage, name: str) -> None:
    try:
        storage.remove(name)
    except errors.NotFound:
        pass

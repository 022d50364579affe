"""The journaled restore: unpack into a hidden directory in the target, verify, then swap.

The target's own entries are not touched until the archive is fully unpacked and its sha256
matched. Each step is recorded in the target's journal first (journal.py), so that a run killed
at any point is finished or rolled back by the next one, and messages say what is true.
"""

from __future__ import annotations

import itertools
import secrets
import shlex
from dataclasses import dataclass

from opskit import errors, signals
from opskit.archive import stage_list
from opskit.archive.pipeline import (
    CHUNK_SIZE,
    HashingReader,
    ProgressCallback,
    Stage,
    tar_chunks,
    verify_digest,
)
from opskit.archive.tar_root import TarWatcher
from opskit.archive.threads import ReadAhead
from opskit.engine import helper, tar_flavour, transfer
from opskit.engine.client import cleanup_failed
from opskit.log import get_logger
from opskit.repository import catalog
from opskit.storage.base import Storage
from opskit.volume_ops import journal
from opskit.volume_ops.journal import Journal

log = get_logger(__name__)

TARGET_MOUNT_POINT = "/target"
# tar messages that blame the target, not the archive.
TARGET_PROBLEMS = ("No space left", "Read-only file system", "Permission denied", "Disk quota")
# Paths per `chown -h` call: stays far below the kernel's argument size limit.
CHOWN_BATCH = 200

# The steps of the swap, each safe to run again after a crash at any point ($1 the mounted
# target, $2 the staging directory, $3 the old one; both named by the journal).
# swap-out: every entry but ours moves into $old. swap-in: the staged entries move up and the
# root gets the archive's owner and mode (chown before chmod: chown clears setuid/setgid).
_KEEP = (
    f'! -name "$2" ! -name "$3" ! -name {journal.JOURNAL_NAME} ! -name {journal.JOURNAL_TEMP_NAME}'
)
_STEP_SCRIPTS = {
    "swap-out": f"""
set -e
cd "$1"
mkdir -p -- "$3"
find . -mindepth 1 -maxdepth 1 {_KEEP} -exec sh -c 'mv -- "$@" "$0"/' "$3" {{}} +
""",
    "swap-in": """
set -e
cd "$1"
if [ -d "$2" ]; then
  find "$2" -mindepth 1 -maxdepth 1 -exec sh -c 'mv -- "$@" .' mover {} +
  chown "$(stat -c %u:%g "$2")" .
  chmod "$(stat -c %a "$2")" .
  rmdir -- "$2"
fi
""",
    "delete-old": 'cd "$1" && rm -rf -- "$3"',
    "unpacking": 'cd "$1" && rm -rf -- "$2"',  # rolling back: the staged copy goes
}
_NEXT_PHASE = {"swap-out": "swap-in", "swap-in": "delete-old"}

_HAS_ENTRIES_SCRIPT = """
cd "$1" || exit 20
for entry in .[!.]* ..?* *; do
  if [ -e "$entry" ] || [ -L "$entry" ]; then echo nonempty; exit 0; fi
done
echo empty
"""


@dataclass
class StagedRestore:
    """How a committed restore ended. `signal_name`: a signal that arrived once the swap was
    done (the restore is complete); `old_contents_left`: the replaced entries still wait in
    the hidden old directory, which the next run on the target deletes."""

    watcher: TarWatcher
    signal_name: str | None = None
    old_contents_left: bool = False


def target_has_data(session: helper.HelperSession, what: str) -> bool:
    """Return whether the mounted target holds any entry at all."""
    probe = session.run_checked(
        ["sh", "-c", _HAS_ENTRIES_SCRIPT, "probe", TARGET_MOUNT_POINT], f"inspecting {what}"
    )
    return "nonempty" in probe.output


def recover(session: helper.HelperSession, what: str, users_running: bool = False) -> str | None:
    """Finish or roll back the restore that the mounted target's journal names, if any.

    Call it only under the target's lock (so no live run owns the journal). Return a notice
    saying what was done, or None if there was no journal. Raise `UnfinishedRestore` if the
    journal is invalid, or if finishing a committed swap would move entries under running
    containers (`users_running`); `SwapFailed` if finishing it fails.
    """
    found = journal.read_journal(session, TARGET_MOUNT_POINT, what)
    if found is None:
        return None
    if found.committed and users_running:
        raise errors.UnfinishedRestore(
            f"{what} holds an interrupted restore of {found.backup_id} (verified, phase "
            f"{found.phase}) and running containers use it",
            f"finish it with their containers stopped: opskit volume recover "
            f"{_target_argument(what)} --stop-containers",
        )
    log.warning("restore.recovering", target=what, phase=found.phase, restore=found.restore_id)
    if not found.committed:
        _run_step(session, found, "unpacking", what)
        journal.remove_journal(session, TARGET_MOUNT_POINT)
        return (
            f"removed the staging directory of an interrupted restore of {found.backup_id} "
            f"from {what} (its contents had not been touched)"
        )
    if found.phase != "delete-old":
        with signals.deferred():
            _swap(session, found, what)
        done = f"finished an interrupted restore of {found.backup_id} into {what}"
    else:
        done = f"removed the replaced contents that a restore of {found.backup_id} left in {what}"
    _run_step(session, found.at("delete-old"), "delete-old", what)
    journal.remove_journal(session, TARGET_MOUNT_POINT)
    return done + " (its archive had been verified before the swap began)"


def restore_staged(
    session: helper.HelperSession,
    data_path: transfer.Transfer,
    storage: Storage,
    record: catalog.BackupRecord,
    what: str,
    on_progress: ProgressCallback | None = None,
    allow_devices: bool = False,
    identities: list[object] = (),  # type: ignore[assignment]
) -> StagedRestore:
    """Unpack `record` into a staging directory, verify it, and swap it into place.

    Before the swap, any failure leaves the target's entries untouched (the message says so);
    raise what failed. After it began, raise `SwapFailed` if it cannot be finished now.
    """
    planned = Journal(restore_id=secrets.token_hex(8), backup_id=record.id, phase="unpacking")
    staging_path = f"{TARGET_MOUNT_POINT}/{planned.staging}"
    journal.write_journal(session, TARGET_MOUNT_POINT, planned)
    try:
        session.run_checked(["mkdir", staging_path], "creating a staging directory in the target")
        watcher = _unpack_verified(
            session,
            data_path,
            storage,
            record,
            staging_path,
            on_progress,
            allow_devices,
            identities,
        )
        _apply_what_tar_left_out(session, staging_path, watcher)
    except BaseException as failure:
        rolled_back = _roll_back(session, planned)
        if isinstance(failure, errors.OpskitError):
            failure.message += (
                f" ({what} unchanged)"
                if rolled_back
                else f" ({what} unchanged; its hidden {planned.staging} is removed by the next "
                "opskit run on it)"
            )
        raise
    # The commit point. Renames only, but a stop halfway would leave old and new entries side
    # by side: signals wait for the swap, and are then answered without undoing it.
    with signals.deferred(reraise=False) as caught:
        _swap(session, planned.at("swap-out"), what, write_first=True)
    outcome = StagedRestore(watcher=watcher, signal_name=caught.signal_name)
    if outcome.signal_name is not None:
        outcome.old_contents_left = True  # stop as asked; the next run deletes them
        return outcome
    try:
        _run_step(session, planned.at("delete-old"), "delete-old", what)
        journal.remove_journal(session, TARGET_MOUNT_POINT)
    except errors.Interrupted as interrupted:
        outcome.signal_name, outcome.old_contents_left = interrupted.signal_name, True
    except errors.OpskitError as exc:
        log.error("restore.delete_old_failed", error=str(exc))
        outcome.old_contents_left = True
    log.info("restore.done", id=record.id)
    return outcome


def _swap(
    session: helper.HelperSession, current: Journal, what: str, write_first: bool = False
) -> None:
    """Run the swap from `current`'s phase to `delete-old`, recording each phase first."""
    phase = current.phase  # the phase the journal holds
    try:
        if write_first:
            journal.write_journal(session, TARGET_MOUNT_POINT, current)
        while phase in _NEXT_PHASE:
            _run_step(session, current.at(phase), phase, what)
            journal.write_journal(session, TARGET_MOUNT_POINT, current.at(_NEXT_PHASE[phase]))
            phase = _NEXT_PHASE[phase]
    except errors.OpskitError as exc:
        raise errors.SwapFailed(
            f"the swap of {current.backup_id} into {what} stopped in phase {phase}: {exc}; "
            "the archive was verified and both the new and the old entries are kept",
            f"finish it with: opskit volume recover {_target_argument(what)}",
        ) from exc


def _target_argument(what: str) -> str:
    """`volume pgdata` -> `pgdata`; `path /srv/my data` -> `'/srv/my data'` (for a command)."""
    return shlex.quote(what.split(" ", 1)[-1])


def _run_step(session: helper.HelperSession, current: Journal, step: str, what: str) -> None:
    session.run_checked(
        ["sh", "-c", _STEP_SCRIPTS[step], step, TARGET_MOUNT_POINT, current.staging, current.old],
        f"restore step {step} in {what}",
    )


def _roll_back(session: helper.HelperSession, planned: Journal) -> bool:
    """Remove the staging directory and the journal; return whether that worked. Best effort:
    if it fails too (the engine is gone), the next run's recovery removes them."""
    try:
        _run_step(session, planned, "unpacking", "the target")
        journal.remove_journal(session, TARGET_MOUNT_POINT)
        return True
    except (errors.OpskitError, errors.Interrupted) as exc:
        cleanup_failed(log, "restore.rollback_failed", exc, staging=planned.staging)
        return False


def _unpack_verified(
    session: helper.HelperSession,
    data_path: transfer.Transfer,
    storage: Storage,
    record: catalog.BackupRecord,
    staging_path: str,
    on_progress: ProgressCallback | None,
    allow_devices: bool,
    identities: list[object],
) -> TarWatcher:
    with storage.open(record.archive) as stream:
        stored = HashingReader(stream, on_progress)
        read_ahead = ReadAhead(stored)  # reading and hashing overlap decompression
        chunks = tar_chunks(read_ahead, reader_stages(record, identities), record.archive)
        watcher = TarWatcher(
            chunks,
            allow_devices=allow_devices,
            reserved_names=journal.RESERVED_NAMES,
            archive_name=record.archive,
            extractor_reads_pax_size=_extractor_reads_pax_size(session, data_path),
        )
        try:
            data_path.import_tar(session, staging_path, watcher)
        except (errors.HelperFailed, errors.EngineError) as failure:
            # HelperFailed: the helper's tar (FIFO); EngineError: the archive endpoint's.
            _stop(chunks, read_ahead)
            if any(reason in str(failure) for reason in TARGET_PROBLEMS):
                raise  # the target's fault: no need to read the rest of the archive
            # Otherwise a damaged archive is the likely cause, and then the checksum says so
            # more clearly than "tar: short read".
            while stored.read(CHUNK_SIZE):
                pass
            verify_digest(stored, record.sha256, record.size, record.archive)
            raise
        finally:
            _stop(chunks, read_ahead)
        verify_digest(stored, record.sha256, record.size, record.archive)
    return watcher


def check_archive(
    storage: Storage,
    record: catalog.BackupRecord,
    allow_devices: bool,
    identities: list[object] = (),  # type: ignore[assignment]
) -> None:
    """Read `record`'s archive whole, as a restore would, without unpacking it: every header
    checked, the sha256 and size compared. For a set restore's checks, so that no member is
    swapped in before every member's archive is known good.

    Raise `ChecksumMismatch`, `ArchiveCorrupt` or `ArchiveUnsafe`.
    """
    with storage.open(record.archive) as stream:
        stored = HashingReader(stream)
        read_ahead = ReadAhead(stored)
        chunks = tar_chunks(read_ahead, reader_stages(record, identities), record.archive)
        watcher = TarWatcher(
            chunks,
            allow_devices=allow_devices,
            reserved_names=journal.RESERVED_NAMES,
            archive_name=record.archive,
            extractor_reads_pax_size=True,  # the restore itself checks again, for its tar
        )
        try:
            for _ in watcher:
                pass
        finally:
            _stop(chunks, read_ahead)
        verify_digest(stored, record.sha256, record.size, record.archive)


def check_decryptable(
    storage: Storage, record: catalog.BackupRecord, identities: list[object]
) -> None:
    """For an encrypted backup, raise `WrongKey` unless `identities` open its archive's age
    header: before a restore or drill touches anything (a forced restore's safety backup
    included)."""
    if not record.encrypted:
        return
    with storage.open(record.archive) as stream:
        head = stream.read(stage_list.HEADER_PROBE_BYTES)
    stage_list.check_can_decrypt(head, identities, record.archive)


def reader_stages(record: catalog.BackupRecord, identities: list[object]) -> list[Stage]:
    return stage_list.reader_stages(record.stage_names(), list(identities), record.archive)


def _extractor_reads_pax_size(session: helper.HelperSession, data_path: transfer.Transfer) -> bool:
    """Whether what unpacks the stream honours PAX `size` records (GNU tar, the engine's Go
    archive/tar) or not (busybox): the watcher must read the stream the same way."""
    if data_path.name == transfer.ArchiveApiTransfer.name:
        return True
    return session.tar_flavour().kind == tar_flavour.GNU


def _stop(chunks: object, read_ahead: ReadAhead) -> None:
    """Stop the decompressing and reading threads, in that order (the first reads the second)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
    read_ahead.close()


def _apply_what_tar_left_out(
    session: helper.HelperSession, staging_path: str, watcher: TarWatcher
) -> None:
    """The root's own mode and owner (the archive endpoint skips them) and the owners of
    symlinks (busybox tar does not chown links)."""
    if watcher.root is not None:
        root = watcher.root
        session.run_checked(
            [
                "sh",
                "-c",
                'chown "$1" "$3" && chmod "$2" "$3"',
                "root",
                f"{root.uid}:{root.gid}",
                f"{root.mode:o}",
                staging_path,
            ],
            "setting the target root's owner and mode",
        )
    by_owner = sorted(watcher.owned_symlinks, key=lambda link: (link.uid, link.gid))
    for (uid, gid), links in itertools.groupby(by_owner, key=lambda link: (link.uid, link.gid)):
        paths = [link.path for link in links]
        for start in range(0, len(paths), CHOWN_BATCH):
            session.run_checked(
                [
                    "sh",
                    "-c",
                    'cd "$1" && shift && chown -h "$@"',
                    "chown",
                    staging_path,
                    f"{uid}:{gid}",
                    "--",
                    *paths[start : start + CHOWN_BATCH],
                ],
                "setting the owners of symlinks",
            )

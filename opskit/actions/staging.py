"""The staged restore: unpack into a hidden directory in the target, verify, then swap.

A restore never touches the old contents until the new ones are fully unpacked and the
archive's sha256 matched; a failure at any point leaves the target as it was.
"""

from __future__ import annotations

import itertools
import secrets

import structlog

from opskit import errors, signals
from opskit.archive import catalog
from opskit.archive.pipeline import (
    CHUNK_SIZE,
    HashingReader,
    ProgressCallback,
    tar_chunks,
    verify_digest,
)
from opskit.archive.tar_root import TarWatcher
from opskit.archive.threads import ReadAhead
from opskit.engine import helper, transfer
from opskit.storage.base import Storage

log = structlog.get_logger(__name__)

TARGET_MOUNT_POINT = "/target"
STAGING_PREFIX = ".opskit-restore-"
# tar messages that blame the target, not the archive.
TARGET_PROBLEMS = ("No space left", "Read-only file system", "Permission denied", "Disk quota")
# Paths per `chown -h` call: stays far below the kernel's argument size limit.
CHOWN_BATCH = 200

OLD_PREFIX = ".opskit-old-"

# The swap, by renames only, and safe to run again after a crash at any point:
# phase 1 moves the old entries into $old (then marks it), phase 2 moves the new ones up and
# gives the root the archive's mode and owner, and only then is $old deleted.
# $1 is the restore's id. chown before chmod: chown clears setuid/setgid bits.
SWAP_SCRIPT = f"""
set -e
cd {TARGET_MOUNT_POINT}
staging="{STAGING_PREFIX}$1"; old="{OLD_PREFIX}$1"; marker="$old/.opskit-swap-phase2-$1"
if [ ! -e "$marker" ]; then
  mkdir -p "$old"
  find . -mindepth 1 -maxdepth 1 ! -name "$staging" ! -name "$old" \\
    -exec sh -c 'mv -- "$@" "$0"/' "$old" {{}} +
  touch "$marker"
fi
if [ -d "$staging" ]; then
  find "$staging" -mindepth 1 -maxdepth 1 -exec sh -c 'mv -- "$@" .' mover {{}} +
  chown "$(stat -c %u:%g "$staging")" .
  chmod "$(stat -c %a "$staging")" .
  rmdir -- "$staging"
fi
rm -rf -- "$old"
"""

# Before anything else: finish a swap that a killed restore left (its data was verified),
# drop staging directories of restores killed before their swap, then say whether the target
# holds anything.
PROBE_SCRIPT = f"""
cd {TARGET_MOUNT_POINT} || exit 20
for old in {OLD_PREFIX}*; do
  [ -d "$old" ] || continue
  sh -c "$1" swap "${{old#{OLD_PREFIX}}}" || exit 21
done
for entry in {STAGING_PREFIX}*; do [ -d "$entry" ] && rm -rf -- "$entry"; done
for entry in .[!.]* ..?* *; do
  if [ -e "$entry" ] || [ -L "$entry" ]; then echo nonempty; exit 0; fi
done
echo empty
"""


def target_has_data(session: helper.HelperSession, what: str) -> bool:
    """Return whether the mounted target holds anything (stale staging directories aside)."""
    probe = session.run_checked(
        ["sh", "-c", PROBE_SCRIPT, "probe", SWAP_SCRIPT], f"inspecting {what}"
    )
    return "nonempty" in probe.output


def restore_staged(
    session: helper.HelperSession,
    data_path: transfer.Transfer,
    storage: Storage,
    record: catalog.BackupRecord,
    on_progress: ProgressCallback | None,
) -> None:
    """Unpack `record` into a staging directory, verify it, and swap it into place.

    Raise `SwapFailed` if the swap itself fails (the target may then be mixed); any other
    error means the target was not touched.
    """
    restore_id = secrets.token_hex(4)
    staging_path = f"{TARGET_MOUNT_POINT}/{STAGING_PREFIX}{restore_id}"
    session.run_checked(["mkdir", staging_path], "creating a staging directory in the target")
    try:
        watcher = _unpack_verified(session, data_path, storage, record, staging_path, on_progress)
        _apply_what_tar_left_out(session, staging_path, watcher)
    except BaseException:
        _remove_staging(session, staging_path)
        raise
    # Renames only, but a stop halfway would leave old and new mixed: signals wait for it.
    with signals.deferred():
        result = session.run(["sh", "-c", SWAP_SCRIPT, "swap", restore_id])
    if result.exit_code != 0:
        raise errors.SwapFailed(
            f"replacing the target's contents failed: {result.last_line()}",
            "the verified new contents and the old ones are kept in the target's "
            f"{STAGING_PREFIX}{restore_id} and {OLD_PREFIX}{restore_id}; the next "
            "restore into it finishes the swap",
        )
    log.info("restore.done", id=record.id)


def _unpack_verified(
    session: helper.HelperSession,
    data_path: transfer.Transfer,
    storage: Storage,
    record: catalog.BackupRecord,
    staging_path: str,
    on_progress: ProgressCallback | None,
) -> TarWatcher:
    with storage.open(record.archive) as stream:
        stored = HashingReader(stream, on_progress)
        read_ahead = ReadAhead(stored)  # reading and hashing overlap decompression
        chunks = tar_chunks(read_ahead, record.compression, record.archive)
        watcher = TarWatcher(chunks)
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


def _remove_staging(session: helper.HelperSession, staging_path: str) -> None:
    # Best effort: if this fails too, the next restore's probe removes the leftover.
    try:
        session.run(["rm", "-rf", "--", staging_path])
    except (errors.OpskitError, errors.Interrupted) as exc:
        log.error("restore.staging_cleanup_failed", path=staging_path, error=str(exc))

"""A backup store in a local directory. Atomic by write-to-temp, fsync, rename."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from opskit import errors
from opskit.process_owner import owner_in_name, owner_is_alive, owner_token
from opskit.storage.base import ObjectInfo, ObjectWriter, Storage, check_name

# Temp files start with this, so `list` never shows them and a crash's leftovers are recognisable.
PARTIAL_PREFIX = ".opskit-partial-"
SYNC_EVERY = 64 << 20


def classify_os_error(exc: OSError, what: str) -> errors.OpskitError:
    """Return the opskit error for an OSError raised while doing `what` (e.g. "writing /x")."""
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return errors.DiskFull(f"disk full while {what}", "free space or choose another --to")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return errors.StorageError(f"not writable: {what} ({exc.strerror})")
    if exc.errno == errno.ENOENT:
        return errors.NotFound(f"not found: {what}")
    return errors.StorageError(f"failed {what}: {exc.strerror or exc}")


class LocalObjectWriter(ObjectWriter):
    """Writes to a hidden temp file beside the target and renames it into place on commit."""

    def __init__(self, final_path: Path) -> None:
        self.final_path = final_path
        # The owner in the name lets a later run remove this file if we are killed.
        self.temp_path = final_path.with_name(
            f"{PARTIAL_PREFIX}{owner_token()}+{secrets.token_hex(4)}-{final_path.name}"
        )
        try:
            final_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # 0600: backups hold databases and secrets; only their owner may read them.
            descriptor = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._file: BinaryIO | None = os.fdopen(descriptor, "wb")
            self._unsynced = 0
        except OSError as exc:
            raise classify_os_error(exc, f"creating {self.temp_path}") from exc

    def write(self, data: bytes | memoryview) -> int:
        assert self._file is not None, "write after commit or abort"
        try:
            written = self._file.write(data)
            self._unsynced += written
            if self._unsynced >= SYNC_EVERY:
                # Flush as we go (this runs in the pipeline's writer thread, beside the
                # compressor), so the fsync at commit has little left to do.
                self._file.flush()
                os.fdatasync(self._file.fileno())
                self._unsynced = 0
            return written
        except OSError as exc:
            self.abort()
            raise classify_os_error(exc, f"writing {self.final_path}") from exc

    def commit(self) -> None:
        assert self._file is not None, "commit after commit or abort"
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.rename(self.temp_path, self.final_path)
            _fsync_directory(self.final_path.parent)
        except OSError as exc:
            self.abort()
            raise classify_os_error(exc, f"writing {self.final_path}") from exc
        except BaseException:  # Ctrl-C during a long fsync: no partial file stays behind
            self.abort()
            raise

    def abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # a full disk can fail the close too; the file goes anyway
            self._file = None
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: a crash after it must not resurrect the old state."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class LocalStorage(Storage):
    """Objects are files below `root`; a name's `/` are subdirectories."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self.url = str(self.root)

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def create(self, name: str) -> ObjectWriter:
        return LocalObjectWriter(self._path(name))

    def open(self, name: str) -> BinaryIO:
        path = self._path(name)
        try:
            return open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise classify_os_error(exc, f"reading {path}") from exc

    def stat(self, name: str) -> ObjectInfo:
        path = self._path(name)
        try:
            return ObjectInfo(name=name, size=path.stat().st_size)
        except OSError as exc:
            raise classify_os_error(exc, f"reading {path}") from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        found = []
        try:
            for directory, subdirectories, files in os.walk(self.root):
                subdirectories.sort()
                relative = os.path.relpath(directory, self.root)
                for file_name in files:
                    if file_name.startswith(PARTIAL_PREFIX):
                        continue
                    name = file_name if relative == "." else f"{relative}/{file_name}"
                    if name.startswith(prefix):
                        try:
                            size = os.lstat(os.path.join(directory, file_name)).st_size
                        except FileNotFoundError:
                            continue  # removed while we listed
                        found.append(ObjectInfo(name=name, size=size))
        except OSError as exc:
            raise classify_os_error(exc, f"listing {self.root}") from exc
        yield from sorted(found, key=lambda info: info.name)

    def remove(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink()
        except OSError as exc:
            raise classify_os_error(exc, f"removing {path}") from exc

    def local_directory(self) -> Path | None:
        return self.root

    def check_writable(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.StorageError(
                f"cannot create backup directory {self.root} ({exc.strerror})",
                "choose another --to or fix the path",
            ) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise errors.StorageError(
                f"not writable: {self.root}", "fix its permissions or choose another --to"
            )
        self._remove_orphaned_partials()

    def _remove_orphaned_partials(self) -> None:
        """Remove partial files whose writer died (SIGKILL, power loss): they are never listed,
        but they hold disk space."""
        for path in self.root.glob(f"{PARTIAL_PREFIX}*"):
            owner = owner_in_name(path.name[len(PARTIAL_PREFIX) :])
            if owner and not owner_is_alive(owner):
                path.unlink(missing_ok=True)

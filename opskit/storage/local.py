"""A backup store in a local directory. Atomic by write-to-temp, fsync, rename.

Reads never leave the store: no symlink below the root is followed and only regular files are
opened, so an object planted as a link to `/etc/shadow` or `/dev/urandom` is refused, not read.
Directories the store creates, parents included, are 0700 whatever the umask.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from opskit import errors, untrusted
from opskit.log import get_logger
from opskit.process_owner import owner_in_name, owner_is_alive, owner_token
from opskit.storage.base import ObjectInfo, ObjectWriter, Storage, check_name

# Temp files start with this, so `list` never shows them and a crash's leftovers are recognisable.
PARTIAL_PREFIX = ".opskit-partial-"
SYNC_EVERY = 64 << 20
PRIVATE_DIRECTORY_MODE = 0o700

log = get_logger(__name__)


def classify_os_error(exc: OSError, what: str) -> errors.OpskitError:
    """Return the opskit error for an OSError raised while doing `what` (e.g. "writing /x")."""
    what = untrusted.printable(what)
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return errors.DiskFull(f"disk full while {what}", "free space or choose another --to")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        if what.startswith("reading"):
            return errors.StorageError(f"not readable: {what} ({exc.strerror})")
        return errors.StorageError(f"not writable: {what} ({exc.strerror})")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return _refused(what)
    if exc.errno == errno.ENOENT:
        return errors.NotFound(f"not found: {what}")
    return errors.StorageError(f"failed {what}: {exc.strerror or exc}")


def _refused(what: str) -> errors.StorageError:
    return errors.StorageError(
        f"refused {what}: a symlink or special file, not a regular file inside the store",
        "opskit never writes such files; remove it from the store",
    )


def make_private_directories(directory: Path) -> None:
    """Create `directory` and its missing parents with mode 0700, whatever the umask.

    `Path.mkdir(parents=True)` gives the parents the umask's mode (0777 under umask 000), which
    would let anyone list and replace what a backup store holds. Raise OSError on failure.
    """
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            candidate.mkdir(mode=PRIVATE_DIRECTORY_MODE)
        except FileExistsError:
            if not candidate.is_dir():
                raise
            continue  # made by a concurrent run meanwhile
        # mkdir's mode passes through the umask; a umask such as 0277 would leave it unusable.
        os.chmod(candidate, PRIVATE_DIRECTORY_MODE)


class LocalObjectWriter(ObjectWriter):
    """Writes to a hidden temp file beside the target and renames it into place on commit."""

    def __init__(self, final_path: Path) -> None:
        self.final_path = final_path
        # The owner in the name lets a later run remove this file if we are killed.
        self.temp_path = final_path.with_name(
            f"{PARTIAL_PREFIX}{owner_token()}+{secrets.token_hex(4)}-{final_path.name}"
        )
        try:
            make_private_directories(final_path.parent)
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
        path = self._path(name)
        if "/" in name:  # nested names must not be written through a symlinked directory
            try:
                make_private_directories(path.parent)
            except OSError as exc:
                raise classify_os_error(exc, f"creating {path}") from exc
            with self._parent_directory(name, "creating"):
                pass
        return LocalObjectWriter(path)

    def open(self, name: str) -> BinaryIO:
        path = self._path(name)
        with self._parent_directory(name) as (directory, last):
            try:
                status = os.stat(last, dir_fd=directory, follow_symlinks=False)
                if not stat.S_ISREG(status.st_mode):
                    raise _refused(f"reading {path}")
                # O_NOFOLLOW and the check of what was opened close the gap between the stat
                # and the open (the file swapped for a link or a FIFO meanwhile); O_NONBLOCK
                # keeps that open of a FIFO from waiting for a writer.
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                descriptor = os.open(last, flags, dir_fd=directory)
            except OSError as exc:
                raise classify_os_error(exc, f"reading {path}") from exc
        try:
            opened = os.fstat(descriptor)
            if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
                status.st_dev,
                status.st_ino,
            ):
                raise _refused(f"reading {path}")
            os.set_blocking(descriptor, True)
            return os.fdopen(descriptor, "rb")
        except BaseException:
            os.close(descriptor)
            raise

    def stat(self, name: str) -> ObjectInfo:
        path = self._path(name)
        with self._parent_directory(name) as (directory, last):
            try:
                status = os.stat(last, dir_fd=directory, follow_symlinks=False)
            except OSError as exc:
                raise classify_os_error(exc, f"reading {path}") from exc
        if not stat.S_ISREG(status.st_mode):
            raise _refused(f"reading {path}")
        return ObjectInfo(name=name, size=status.st_size, version=_version(status))

    @contextlib.contextmanager
    def _parent_directory(self, name: str, doing: str = "reading") -> Iterator[tuple[int, str]]:
        """Yield (a descriptor of the directory holding object `name`, its last part), reached
        from the root without following a symlink. The root itself may be one: the user named
        it. Raise `NotFound` if a directory is missing, `StorageError` if one is a symlink."""
        parts = check_name(name).split("/")
        try:
            directory = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise classify_os_error(exc, f"{doing} {self.root / name}") from exc
        try:
            for part in parts[:-1]:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    below = os.open(part, flags, dir_fd=directory)
                except OSError as exc:
                    raise classify_os_error(exc, f"{doing} {self.root / name}") from exc
                os.close(directory)
                directory = below
            yield directory, parts[-1]
        finally:
            os.close(directory)

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
                            status = os.lstat(os.path.join(directory, file_name))
                        except FileNotFoundError:
                            continue  # removed while we listed
                        found.append(ObjectInfo(name, status.st_size, _version(status)))
        except OSError as exc:
            raise classify_os_error(exc, f"listing {self.root}") from exc
        yield from sorted(found, key=lambda info: info.name)

    def remove(self, name: str) -> None:
        path = self._path(name)
        with self._parent_directory(name, "removing") as (directory, last):
            try:
                os.unlink(last, dir_fd=directory)
            except OSError as exc:
                raise classify_os_error(exc, f"removing {path}") from exc

    def local_directory(self) -> Path | None:
        return self.root

    def check_writable(self) -> None:
        try:
            make_private_directories(self.root)
        except OSError as exc:
            raise errors.StorageError(
                f"cannot create backup directory {untrusted.printable(self.url)} ({exc.strerror})",
                "choose another --to or fix the path",
            ) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise errors.StorageError(
                f"not writable: {untrusted.printable(self.url)}",
                "fix its permissions or choose another --to",
            )
        self._remove_orphaned_partials()

    def remove_leftovers(self) -> None:
        self._remove_orphaned_partials()

    def _remove_orphaned_partials(self) -> None:
        """Remove partial files whose writer died (SIGKILL, power loss): they are never listed,
        but they hold disk space. Best effort: a read-only store is still listable."""
        if not self.root.is_dir():
            return
        for directory, _, files in os.walk(self.root):  # symlinked directories are not entered
            for file_name in files:
                if not file_name.startswith(PARTIAL_PREFIX):
                    continue
                owner = owner_in_name(file_name[len(PARTIAL_PREFIX) :])
                if owner and not owner_is_alive(owner):
                    path = os.path.join(directory, file_name)
                    try:
                        os.unlink(path)
                        log.info("removed a partial file of a killed run", path=path)
                    except OSError as exc:
                        log.debug("could not remove a partial file", path=path, error=str(exc))


def _version(status: os.stat_result) -> str:
    """A file's content version: objects are replaced by renaming a new file over them, so a
    replaced object has a new inode (and mtime)."""
    return f"{status.st_ino:x}-{status.st_mtime_ns:x}"

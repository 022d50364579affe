"""The one storage interface every backup store implements (local directory, S3, ...).

A store holds flat, named objects under a root (a directory or a bucket prefix). Names are
relative, use `/` only, and never start with `/` or contain `..`.

Writes are atomic: `create(name)` returns a writer; bytes become visible under `name` only when
the writer is committed. On an exception or `abort()` nothing remains (no temp file, no
multipart upload). Each implementation classifies its own failures into `opskit.errors`
(`NotFound`, `StorageUnreachable`, `DiskFull`, `StorageError`).
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from opskit import errors, untrusted


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its name relative to the store's root, its size in bytes, and a
    `version` that changes whenever its content is replaced (S3's ETag; a local file's inode and
    mtime), or "" where the store cannot tell."""

    name: str
    size: int
    version: str = ""


class ObjectWriter(abc.ABC):
    """A file-like sink for one object. As a context manager: commit on success, abort on error."""

    @abc.abstractmethod
    def write(self, data: bytes | memoryview) -> int:
        """Write bytes; return how many."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Make the object visible under its name, atomically. Raise on failure (then aborted)."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Discard everything written. Safe to call twice and after a failed commit."""

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        """File-like protocol: compressors call it; data is flushed on commit."""

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Storage(abc.ABC):
    """A backup store. `url` is how a user names it (`/srv/backups`, `s3://bucket/prefix`)."""

    url: str

    @abc.abstractmethod
    def create(self, name: str) -> ObjectWriter:
        """Return a writer for a new object `name`; it replaces an existing one on commit."""

    @abc.abstractmethod
    def open(self, name: str) -> BinaryIO:
        """Return a readable binary stream of object `name`. Raise `NotFound` if absent."""

    @abc.abstractmethod
    def stat(self, name: str) -> ObjectInfo:
        """Return the object's info. Raise `NotFound` if absent."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the committed objects whose names start with `prefix`, in name order."""

    def list_directories(self) -> builtins.list[str]:
        """Return the names of the directories directly below the root that hold committed
        objects, sorted (S3 has no directories: the first parts of its names before a `/`).

        The default derives them from `list()`; a store that can ask for them alone does."""
        return sorted({info.name.split("/", 1)[0] for info in self.list() if "/" in info.name})

    @abc.abstractmethod
    def remove(self, name: str) -> None:
        """Remove object `name`. Raise `NotFound` if absent."""

    @abc.abstractmethod
    def check_writable(self) -> None:
        """Raise a `StorageError` subclass now if a backup could not be written here."""

    def location(self, name: str) -> str:
        """Return the full address of object `name`, for people and for metadata."""
        return f"{self.url.rstrip('/')}/{name}"

    def read_bytes(self, name: str) -> bytes:
        """Return a small object's whole content (metadata files only: never archives)."""
        with self.open(name) as stream:
            return stream.read()

    def write_bytes(self, name: str, data: bytes) -> None:
        """Store a small object atomically."""
        with self.create(name) as writer:
            writer.write(data)

    def remove_leftovers(self) -> None:
        """Remove what killed writers (SIGKILL, OOM, power loss) left in the store: partial
        files, staging objects. Best effort and quiet: never raises for what it cannot remove.
        The default has nothing to remove."""

    def local_directory(self) -> Path | None:
        """The directory on this machine holding the objects, if there is one."""
        return None

    def close(self) -> None:
        """Release connections; the default has none."""


def check_directory_exists(storage: Storage, hint: str = "check --from") -> None:
    """Raise `NotFound` (with `hint`) if `storage` is a local directory that does not exist:
    reading a store there must say so, not report "no backups"."""
    directory = storage.local_directory()
    if directory is not None and not directory.is_dir():
        raise errors.NotFound(
            f"backup directory {untrusted.printable(str(directory))} does not exist", hint
        )


def check_name(name: str) -> str:
    """Return `name` if it is a valid object name, else raise ValueError (a programming error).

    Control characters are refused too: names reach paths, keys and terminals.
    """
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(character) < 32 or ord(character) == 127 for character in name)
    ):
        raise ValueError(f"invalid object name {name!r}")
    return name

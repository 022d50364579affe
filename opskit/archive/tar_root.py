"""Reading the tar stream's own root entry (`./`): its mode and owner become the target root's."""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class RootEntry:
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int


class RootEntrySniffer:
    """Passes tar chunks through unchanged and remembers the first header if it is `./`.

    The engine's archive endpoint does not apply the root entry to an existing directory, so
    the restore applies it itself.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = chunks
        self.root: RootEntry | None = None
        self._head = b""

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if len(self._head) < BLOCK:
                self._head += chunk[: BLOCK - len(self._head)]
                if len(self._head) == BLOCK:
                    self.root = parse_root_header(self._head)
            yield chunk


def parse_root_header(block: bytes) -> RootEntry | None:
    """Return the root directory entry of a 512-byte tar header block, else None."""
    try:
        info = tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return None
    if not info.isdir() or info.name.rstrip("/") not in (".", ""):
        return None
    return RootEntry(mode=info.mode & 0o7777, uid=info.uid, gid=info.gid)

"""Watching a tar stream's headers on the way to the helper, for what its tar will not restore.

- The root entry (`./`): the engine's archive endpoint does not apply it to an existing
  directory, so the restore gives the target root its mode and owner itself.
- Symlinks owned by someone other than root: busybox `tar -x` never chowns a symlink, so the
  restore runs `chown -h` on them afterwards.

Only headers are parsed (ustar, GNU long names, PAX); file data passes through untouched.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

BLOCK = tarfile.BLOCKSIZE
# Header types whose payload is metadata for the next entry.
_PAX_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_GNU_LONG = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
# A metadata payload larger than this is not buffered (no sane name or PAX record is).
_MAX_META = 1 << 20


@dataclass(frozen=True)
class RootEntry:
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int


@dataclass(frozen=True)
class OwnedSymlink:
    path: str  # as in the archive, e.g. "./etc/link"
    uid: int
    gid: int


class TarWatcher:
    """Passes tar chunks through unchanged, parsing headers as they go by."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        allow_devices: bool = False,
        reserved_names: tuple[str, ...] = (),
    ) -> None:
        self.chunks = chunks
        self.allow_devices = allow_devices
        self.reserved_names = reserved_names  # top-level names the archive may not hold
        self.setid_files: list[str] = []  # setuid/setgid files (the first MAX_NAMED of them)
        self.setid_count = 0
        self.root: RootEntry | None = None
        self.owned_symlinks: list[OwnedSymlink] = []
        self._pending = bytearray()  # an incomplete header or metadata payload
        self._skip = 0  # data bytes (with padding) still to pass before the next header
        self._meta_type: bytes | None = None  # type of the metadata payload being collected
        self._meta_size = 0
        self._long_name: str | None = None
        self._pax: dict[str, str] = {}
        self._first = True
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if not self._ended:
                self._feed(memoryview(chunk))
            yield chunk

    def _feed(self, data: memoryview) -> None:
        while data and not self._ended:
            if self._skip:
                taken = min(self._skip, len(data))
                self._skip -= taken
                data = data[taken:]
                continue
            wanted = self._wanted()
            taken = min(wanted - len(self._pending), len(data))
            self._pending += data[:taken]
            data = data[taken:]
            if len(self._pending) == wanted:
                block = bytes(self._pending)
                self._pending.clear()
                if self._meta_type is None:
                    self._header(block)
                else:
                    self._metadata(block)

    def _wanted(self) -> int:
        if self._meta_type is None:
            return BLOCK
        return _padded(self._meta_size)

    def _header(self, block: bytes) -> None:
        if block == bytes(BLOCK):
            self._ended = True  # end-of-archive marker: nothing more to learn
            return
        try:
            info = tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
        except tarfile.HeaderError:
            self._ended = True  # not tar as we know it; let the helper's tar judge
            return
        if info.type in _PAX_HEADERS or info.type in _GNU_LONG:
            if info.size > _MAX_META:
                self._ended = True
                return
            self._meta_type, self._meta_size = info.type, info.size
            return
        size = int(self._pax.get("size", info.size))
        self._entry(info)
        if info.isreg():
            self._skip = _padded(size)

    def _metadata(self, payload: bytes) -> None:
        meta_type, size = self._meta_type, self._meta_size
        self._meta_type = None
        content = payload[:size]
        if meta_type == tarfile.GNUTYPE_LONGNAME:
            self._long_name = content.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif meta_type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
            self._pax = _parse_pax(content)

    def _entry(self, info: tarfile.TarInfo) -> None:
        name = self._pax.get("path") or self._long_name or info.name
        uid = int(self._pax.get("uid", info.uid))
        gid = int(self._pax.get("gid", info.gid))
        self._pax, self._long_name = {}, None
        if self._first:
            self._first = False
            if info.isdir() and name.rstrip("/") in (".", ""):
                self.root = RootEntry(mode=info.mode & 0o7777, uid=uid, gid=gid)
        if info.issym() and (uid, gid) != (0, 0):
            self.owned_symlinks.append(OwnedSymlink(path=name, uid=uid, gid=gid))


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _parse_pax(content: bytes) -> dict[str, str]:
    """Parse PAX records (`<length> <key>=<value>\\n`); keep the keys we use."""
    records: dict[str, str] = {}
    position = 0
    while position < len(content):
        space = content.find(b" ", position)
        if space < 0:
            break
        try:
            length = int(content[position:space])
        except ValueError:
            break
        if length <= 0:
            break
        record = content[space + 1 : position + length - 1]
        key, _, value = record.partition(b"=")
        if key in (b"path", b"uid", b"gid", b"size"):
            records[key.decode()] = value.decode("utf-8", "surrogateescape")
        position += length
    return records

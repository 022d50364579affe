"""Listing a tar stream as it passes: one small record per entry, file contents hashed, not kept.

The restore drill (actions/verify.py) lists the stored archive and the tar re-exported from the
restored scratch volume with the same lister, and compares the two listings as maps by path.

Headers are read as the restore's watcher reads them (tar_root.py: ustar, GNU long names, PAX,
strict numbers, checksums), and the same name wins (GNU sparse name, PAX path, GNU long name,
ustar prefix and name). A file's sha256 is of its real content: for GNU sparse files (PAX
format 1.0, what GNU tar `--format=posix --sparse` writes) the holes are hashed as the zeros
a reader sees. Memory is bounded by one header or metadata payload (at most 1 MiB) plus one
record per entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn

from opskit import errors
from opskit.archive.tar_root import (
    BLOCK,
    MAX_METADATA,
    _candidate_links,
    _candidate_names,
    _checksum_matches,
    _padded,
    _parts,
    _strict_number,
    parse_pax_records,
)

ROOT = "."
_ZERO_BLOCK = bytes(BLOCK)
_ZEROS = bytes(1 << 20)
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_TYPES = {
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CHRTYPE: "char-device",
    tarfile.BLKTYPE: "block-device",
}
_METADATA_TYPES = (
    tarfile.XHDTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
# PAX records that hold extended attributes, ACLs and SELinux labels (GNU tar's names).
_ATTRIBUTE_PREFIXES = ("SCHILY.xattr.", "SCHILY.acl.", "RHT.security.selinux")
_PAX_TIME = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


@dataclass(frozen=True, slots=True)
class ListedEntry:
    """One entry of a tar stream. `path` is normalised (`.` is the root, `a/b` below it).

    `type` is file, dir, symlink, hardlink, fifo, char-device, block-device or `other(X)`.
    `link` is a symlink's target as written, or the normalised path a hardlink names. `size`
    and `sha256` are a regular file's (real) content; `sha256` is None where the content could
    not be read (a sparse format this lister does not know). `attributes` are the entry's
    extended attributes, ACLs and labels as (PAX key, sha256 of the value) pairs, sorted.
    """

    path: str
    type: str
    mode: int
    uid: int
    gid: int
    mtime: int  # seconds since the epoch
    mtime_ns: int = 0  # the sub-second part, in nanoseconds (0 where the header has none)
    size: int = 0
    sha256: str | None = None
    link: str | None = None
    device: tuple[int, int] | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass
class TarListing:
    """What a lister read: entries by normalised path (a later entry of the same path
    replaces an earlier one, as extraction does), in the stream's order."""

    entries: dict[str, ListedEntry] = field(default_factory=dict)
    duplicates: int = 0  # entries that replaced an earlier one of the same path
    bytes_after_end: int = 0  # non-zero bytes after the end-of-archive marker, ignored


class TarLister:
    """Feed it a tar stream chunk by chunk (`feed`), then call `finish()` for the listing.

    Raise `ArchiveCorrupt` (naming `name` and the byte offset) for a header that is not tar
    data, and from `finish()` if the stream ends inside an entry or before the end marker:
    that is how a truncated archive shows.
    """

    def __init__(self, name: str = "archive") -> None:
        self.name = name
        self.listing = TarListing()
        self._offset = 0  # stream position of the next byte fed
        self._pending = bytearray()  # a header or metadata payload being collected
        self._unit_at = 0  # where that unit began, for messages
        self._wanted = BLOCK  # bytes of the unit being collected
        self._meta_type: bytes | None = None
        self._meta_size = 0
        self._pax: dict[str, str] = {}
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._file: _FileContent | None = None  # the regular file whose data is passing
        self._skip = 0  # padding (or unread data) before the next header
        self._ended = False

    def feed(self, data: bytes | memoryview) -> None:
        """Read `data`, the next bytes of the stream."""
        view = memoryview(data)
        position, length = 0, len(view)
        while position < length:
            if self._ended:
                rest = view[position:]
                self.listing.bytes_after_end += len(bytes(rest).replace(b"\0", b""))
                break
            if self._file is not None:
                taken = self._file.feed(view[position:], self)
                position += taken
                if self._file.done:
                    self._finish_file()
                continue
            if self._skip:
                taken = min(self._skip, length - position)
                self._skip -= taken
                position += taken
                continue
            if not self._pending:
                self._unit_at = self._offset + position
            taken = min(self._wanted - len(self._pending), length - position)
            self._pending += view[position : position + taken]
            position += taken
            if len(self._pending) == self._wanted:
                unit = bytes(self._pending)
                self._pending.clear()
                self._unit(unit)
        self._offset += length

    def finish(self) -> TarListing:
        """Return the listing. Raise `ArchiveCorrupt` if the stream stopped short."""
        if self._file is not None or self._skip or self._pending or self._meta_type:
            self._corrupt("it ends inside an entry (truncated)", self._offset)
        if not self._ended:
            self._corrupt("it ends before the end-of-archive marker (truncated)", self._offset)
        return self.listing

    # -- units: headers and metadata payloads --

    def _unit(self, unit: bytes) -> None:
        if self._meta_type is not None:
            self._metadata(unit)
            self._wanted = BLOCK
        else:
            self._header(unit)

    def _header(self, block: bytes) -> None:
        if block == _ZERO_BLOCK:
            self._ended = True
            return
        if not _checksum_matches(block):
            self._corrupt("a tar header with a wrong checksum (not tar data)")
        size = _strict_number(block[124:136], allow_base256=True)
        if size is None:
            self._corrupt("a tar header with an unreadable size field")
        kind = block[156:157]
        if kind in _METADATA_TYPES:
            if size > MAX_METADATA:
                self._corrupt(f"a metadata header of {size} bytes (more than {MAX_METADATA})")
            if size:
                self._meta_type, self._meta_size, self._wanted = kind, size, _padded(size)
            return
        self._entry(block, kind, size)

    def _metadata(self, payload: bytes) -> None:
        kind, content = self._meta_type, payload[: self._meta_size]
        self._meta_type = None
        if kind == tarfile.GNUTYPE_LONGNAME:
            self._long_name = _c_text(content)
        elif kind == tarfile.GNUTYPE_LONGLINK:
            self._long_link = _c_text(content)
        elif kind in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
            self._pax.update(self._parse_pax(content))
        # A global header (XGLTYPE) sets defaults no writer opskit uses relies on: ignored.

    def _entry(self, block: bytes, kind: bytes, header_size: int) -> None:
        pax, long_name, long_link = self._pax, self._long_name, self._long_link
        self._pax, self._long_name, self._long_link = {}, None, None
        path = _normalised(_candidate_names(block, pax, long_name)[0])
        size = int(pax["size"]) if pax.get("size", "").isdigit() else header_size
        mode = _strict_number(block[100:108], allow_base256=False, empty=0)
        uid = _pax_int(pax, "uid", _strict_number(block[108:116], True, empty=0))
        gid = _pax_int(pax, "gid", _strict_number(block[116:124], True, empty=0))
        mtime = _mtime(block[136:148], pax.get("mtime"))
        if mode is None or uid is None or gid is None or mtime is None:
            self._corrupt(f"entry {path!r} has an unreadable mode, owner or mtime")
        seconds, nanoseconds = mtime
        common = ListedEntry(
            path=path,
            type="file",
            mode=mode & 0o7777,
            uid=uid,
            gid=gid,
            mtime=seconds,
            mtime_ns=nanoseconds,
            attributes=_attributes(pax),
        )
        if kind in _REGULAR or kind == tarfile.GNUTYPE_SPARSE:
            self._file = _FileContent(common, size, pax, old_sparse=kind == tarfile.GNUTYPE_SPARSE)
            if self._file.done:
                self._finish_file()
            return
        link = None
        if kind == tarfile.SYMTYPE:
            link = _candidate_links(block, pax, long_link)[0]
        elif kind == tarfile.LNKTYPE:
            link = _normalised(_candidate_links(block, pax, long_link)[0])
        device = None
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            major = _strict_number(block[329:337], allow_base256=True, empty=0)
            minor = _strict_number(block[337:345], allow_base256=True, empty=0)
            device = (major or 0, minor or 0)
        entry_type = _TYPES.get(kind, f"other({kind.decode('latin-1')!r})")
        self._add(dataclasses.replace(common, type=entry_type, link=link, device=device))
        self._skip = _padded(size) if kind not in _TYPES else 0

    def _finish_file(self) -> None:
        content = self._file
        assert content is not None
        self._file = None
        self._skip = content.padding
        self._add(
            dataclasses.replace(content.common, size=content.real_size, sha256=content.digest())
        )

    def _add(self, entry: ListedEntry) -> None:
        if entry.path in self.listing.entries:
            self.listing.duplicates += 1
            del self.listing.entries[entry.path]  # keep the stream's order: it moves last
        self.listing.entries[entry.path] = entry

    def _parse_pax(self, content: bytes) -> dict[str, str]:
        """Parse PAX records, keeping every key (xattrs are compared too)."""
        return parse_pax_records(content, lambda key: True, self._corrupt)

    def _corrupt(self, what: str, offset: int | None = None) -> NoReturn:
        at = self._unit_at if offset is None else offset
        raise errors.ArchiveCorrupt(
            f"{self.name} is corrupt: {what} at byte {at}",
            "restore another backup (opskit volume list)",
        )


class _FileContent:
    """A regular file's data as it passes: hashed, and for GNU sparse 1.0 files, with the map
    read first and the holes hashed as zeros."""

    def __init__(
        self, common: ListedEntry, stored_size: int, pax: dict[str, str], old_sparse: bool
    ) -> None:
        self.common = common
        self.remaining = stored_size  # stored data bytes still to come
        self.padding = _padded(stored_size) - stored_size
        self.hash: hashlib._Hash | None = hashlib.sha256()
        self.real_size = stored_size
        self.position = 0  # of the real content hashed so far
        self.segments: list[tuple[int, int]] | None = None  # sparse: (offset, size) still due
        self.map_text = bytearray()  # sparse: the map being read
        self.sparse = pax.get("GNU.sparse.major") == "1" and pax.get("GNU.sparse.minor") == "0"
        if self.sparse:
            self.real_size = int(pax.get("GNU.sparse.realsize", "0") or 0)
        elif old_sparse or "GNU.sparse.size" in pax or "GNU.sparse.map" in pax:
            self.hash = None  # old GNU or PAX 0.x sparse formats: content not read
            self.real_size = _pax_int(pax, "GNU.sparse.size", None) or stored_size

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def feed(self, data: memoryview, lister: TarLister) -> int:
        """Take what of `data` belongs to this file; return how many bytes."""
        taken = min(self.remaining, len(data))
        piece = data[:taken]
        self.remaining -= taken
        if self.hash is None:
            return taken
        if not self.sparse:
            self.hash.update(piece)
            return taken
        while piece:
            if self.segments is None:
                piece = self._read_map(piece, lister)
                continue
            if not self.segments:
                lister._corrupt(f"sparse file {self.common.path!r} has more data than its map")
            offset, size = self.segments[0]
            if offset + size < self.position or offset > self.real_size:
                lister._corrupt(f"sparse file {self.common.path!r} has an unordered map")
            self._zeros_until(offset)
            used = min(size - (self.position - offset), len(piece))
            self.hash.update(piece[:used])
            self.position += used
            piece = piece[used:]
            if self.position == offset + size:
                self.segments.pop(0)
        if self.done:
            if self.segments is None or any(size for _, size in self.segments):
                lister._corrupt(f"sparse file {self.common.path!r} has less data than its map")
            self._zeros_until(self.real_size)
        return taken

    def _read_map(self, piece: memoryview, lister: TarLister) -> memoryview:
        """Collect the map's blocks (decimal numbers, one a line, padded to a block)."""
        used = min(BLOCK - len(self.map_text) % BLOCK, len(piece))
        self.map_text += piece[:used]
        if len(self.map_text) % BLOCK == 0:
            numbers = bytes(self.map_text).split(b"\n")[:-1]
            if numbers and numbers[0].isdigit():
                count = int(numbers[0])
                if len(numbers) >= 1 + 2 * count:
                    values = [int(number) for number in numbers[1 : 1 + 2 * count]]
                    self.segments = [
                        (values[index], values[index + 1])
                        for index in range(0, len(values), 2)
                        if values[index + 1]
                    ]
            if self.segments is None and (
                len(self.map_text) > MAX_METADATA or not numbers or not numbers[0].isdigit()
            ):
                lister._corrupt(f"sparse file {self.common.path!r} has an unreadable map")
        return piece[used:]

    def _zeros_until(self, offset: int) -> None:
        assert self.hash is not None
        while self.position < offset:
            step = min(len(_ZEROS), offset - self.position)
            self.hash.update(_ZEROS[:step])
            self.position += step

    def digest(self) -> str | None:
        return self.hash.hexdigest() if self.hash is not None else None


def _normalised(name: str) -> str:
    return "/".join(_parts(name)) or ROOT


def _c_text(content: bytes) -> str:
    end = content.find(b"\0")
    return (content if end < 0 else content[:end]).decode("utf-8", "surrogateescape")


def _pax_int(pax: dict[str, str], key: str, default: int | None) -> int | None:
    value = pax.get(key)
    if value is None:
        return default
    return int(value) if value.isdigit() else None


def _mtime(field_bytes: bytes, pax_value: str | None) -> tuple[int, int] | None:
    """(seconds, nanoseconds) from a PAX `mtime` (`-12.5`, `1600000000.123456789`) or the
    header's field (octal, or GNU base-256, negative ones included)."""
    if pax_value is not None:
        match = _PAX_TIME.fullmatch(pax_value)
        if match is None:
            return None
        sign, whole, fraction = match.groups()
        nanoseconds = int((fraction or "0")[:9].ljust(9, "0"))
        seconds = int(whole)
        if sign:  # -12.5 is 12.5 s before the epoch: second -13, plus 0.5 s
            seconds = -seconds - (1 if nanoseconds else 0)
            nanoseconds = (1_000_000_000 - nanoseconds) % 1_000_000_000
        return seconds, nanoseconds
    if field_bytes[0] == 0xFF:
        return int.from_bytes(field_bytes, "big", signed=True), 0
    header_seconds = _strict_number(field_bytes, allow_base256=True, empty=0)
    return None if header_seconds is None else (header_seconds, 0)


def _attributes(pax: dict[str, str]) -> tuple[tuple[str, str], ...]:
    found = [
        (key, hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:16])
        for key, value in pax.items()
        if key.startswith(_ATTRIBUTE_PREFIXES)
    ]
    return tuple(sorted(found))


def list_tar(chunks: Iterable[bytes], name: str = "archive") -> TarListing:
    """Given tar chunks, return their listing (see `TarLister`)."""
    lister = TarLister(name)
    for chunk in chunks:
        lister.feed(chunk)
    return lister.finish()


# -- comparing two listings --

LARGE_OWNER_MASK = 0xFFFFFF  # what a writer without `large-owners` keeps of an owner (24 bits)
# Which `keeps` token (tar_flavour.KEEPS_VOCABULARY) covers which attribute records.
_ATTRIBUTE_KEEPS = (
    ("SCHILY.xattr.security.capability", "capabilities"),
    ("SCHILY.xattr.security.selinux", "selinux"),
    ("RHT.security.selinux", "selinux"),
    ("SCHILY.acl.", "acls"),
    ("SCHILY.xattr.", "xattrs"),
)


@dataclass(frozen=True)
class Difference:
    """One way the restored tree differs from the archive: `what` is `missing`, `unexpected`,
    `hardlinks` or the name of an attribute (type, mode, owner, size, content, link, device,
    mtime, attributes)."""

    path: str
    what: str
    archive: str = ""
    restored: str = ""

    def __str__(self) -> str:
        shown = "./" + self.path if self.path != ROOT else "./"
        if self.what == "missing":
            return f"{shown!r} is missing after the restore ({self.archive})"
        if self.what == "unexpected":
            return f"{shown!r} was not in the archive ({self.restored})"
        return f"{shown!r} {self.what}: {self.archive} in the archive, {self.restored} restored"


def compare(archive: TarListing, restored: TarListing, keeps: Iterable[str]) -> list[Difference]:
    """Given the archive's listing, the restored tree's, and what both tars keep beyond the
    basics (tar_flavour.KEEPS_VOCABULARY), return every difference, by path.

    Not compared, because they legitimately differ: the root directory's mtime (the restore's
    swap changes it), directory mtimes unless `dir-mtimes` is kept, sub-second mtimes unless
    `subsecond-mtimes` is, mtimes before 1970 unless `pre-1970-mtimes` is (else they count as
    0), owners above 24 bits unless `large-owners` is, and the mtimes and modes of symlinks
    (Linux gives symlinks no mode, and not every tar sets their times). Hardlinks are compared
    as groups of paths: which name a tar writes first depends on the order it reads a directory.
    """
    kept = frozenset(keeps)
    expected, expected_groups = _resolved(archive)
    actual, actual_groups = _resolved(restored)
    differences: list[Difference] = []
    for path in expected.keys() - actual.keys():
        differences.append(Difference(path, "missing", archive=_describe(expected[path])))
    for path in actual.keys() - expected.keys():
        differences.append(Difference(path, "unexpected", restored=_describe(actual[path])))
    for path in expected.keys() & actual.keys():
        differences += _entry_differences(expected[path], actual[path], kept)
    reported: set[frozenset[str]] = set()
    for path in sorted(expected.keys() & actual.keys()):
        want = expected_groups.get(path, frozenset([path]))
        got = actual_groups.get(path, frozenset([path]))
        if want != got and want not in reported:
            reported.add(want)
            differences.append(Difference(path, "hardlinks", _group_text(want), _group_text(got)))
    return sorted(differences, key=lambda difference: (difference.path, difference.what))


def _resolved(
    listing: TarListing,
) -> tuple[dict[str, ListedEntry], dict[str, frozenset[str]]]:
    """Entries with each hardlink replaced by what it links to (under its own path), and for
    each path in a hardlink group, the group."""
    entries = listing.entries
    resolved: dict[str, ListedEntry] = {}
    leader_of: dict[str, str] = {}
    for path, entry in entries.items():
        if entry.type != "hardlink" or entry.link is None:
            resolved[path] = entry
            continue
        leader, seen = entry.link, {path}
        while leader in entries and entries[leader].type == "hardlink" and leader not in seen:
            seen.add(leader)
            leader = entries[leader].link or leader
        target = entries.get(leader)
        if target is None or target.type == "hardlink":
            resolved[path] = entry  # a link to nothing in the stream: compared as it stands
            continue
        leader_of[path] = leader
        resolved[path] = dataclasses.replace(target, path=path)
    members: dict[str, set[str]] = {}
    for path, leader in leader_of.items():
        members.setdefault(leader, {leader}).add(path)
    groups = {path: frozenset(group) for group in members.values() for path in group}
    return resolved, groups


def _entry_differences(
    archive: ListedEntry, restored: ListedEntry, kept: frozenset[str]
) -> list[Difference]:
    path = archive.path
    if archive.type != restored.type:
        return [Difference(path, "type", archive.type, restored.type)]
    found: list[Difference] = []

    def differ(what: str, expected: object, actual: object) -> None:
        if expected != actual:
            found.append(Difference(path, what, str(expected), str(actual)))

    if archive.type != "symlink":
        differ("mode", f"{archive.mode:04o}", f"{restored.mode:04o}")
    differ("owner", _owner(archive, kept), _owner(restored, kept))
    if archive.type == "file":
        differ("size", archive.size, restored.size)
        if archive.sha256 is not None and restored.sha256 is not None:
            differ("content", f"sha256 {archive.sha256[:12]}", f"sha256 {restored.sha256[:12]}")
    if archive.type in ("symlink", "hardlink"):
        differ("link", repr(archive.link), repr(restored.link))
    if archive.device is not None or restored.device is not None:
        differ("device", archive.device, restored.device)
    if _mtime_compared(archive, kept):
        differ("mtime", _mtime_text(archive, kept), _mtime_text(restored, kept))
    differ("attributes", _attribute_text(archive, kept), _attribute_text(restored, kept))
    return found


def _owner(entry: ListedEntry, kept: frozenset[str]) -> str:
    if "large-owners" in kept:
        return f"{entry.uid}:{entry.gid}"
    return f"{entry.uid & LARGE_OWNER_MASK}:{entry.gid & LARGE_OWNER_MASK}"


def _mtime_compared(entry: ListedEntry, kept: frozenset[str]) -> bool:
    if entry.type == "symlink" or entry.path == ROOT:
        return False
    return entry.type != "dir" or "dir-mtimes" in kept


def _mtime_text(entry: ListedEntry, kept: frozenset[str]) -> str:
    seconds, nanoseconds = entry.mtime, entry.mtime_ns
    if seconds < 0 and "pre-1970-mtimes" not in kept:
        seconds, nanoseconds = 0, 0
    if "subsecond-mtimes" in kept and nanoseconds:
        return f"{seconds}.{nanoseconds:09d}"
    return str(seconds)


def _attribute_text(entry: ListedEntry, kept: frozenset[str]) -> str:
    shown = []
    for key, digest in entry.attributes:
        token = next((token for prefix, token in _ATTRIBUTE_KEEPS if key.startswith(prefix)), "")
        if token in kept:
            shown.append(f"{key}={digest[:8]}")
    return ", ".join(shown) or "none"


def _describe(entry: ListedEntry) -> str:
    text = f"{entry.type}, mode {entry.mode:04o}, owner {entry.uid}:{entry.gid}"
    if entry.type == "file":
        text += f", {entry.size} bytes"
    if entry.link is not None:
        text += f", -> {entry.link!r}"
    return text


def _group_text(group: frozenset[str]) -> str:
    return "{" + ", ".join(repr(path) for path in sorted(group)) + "}"

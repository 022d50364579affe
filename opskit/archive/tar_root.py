"""Watching a tar stream's headers on the way to the helper: what its tar will not restore, and
what it must never be given.

- The root entry (`./`): the engine's archive endpoint does not apply it to an existing
  directory, so the restore gives the target root its mode and owner itself.
- Symlinks owned by someone other than root: busybox `tar -x` never chowns a symlink, so the
  restore runs `chown -h` on them afterwards.
- Containment: an entry that would land outside the staging directory, or be written through
  (or replace) a symlink that the archive itself created, or a device node, raises
  `ArchiveUnsafe` before the chunk holding its header is passed on, so the helper's tar never
  sees it. The rules follow Python's `tarfile` `data` filter (PEP 706) and GNU tar's and
  bsdtar's protections; symlink targets themselves may point anywhere, since nothing follows
  them during extraction.
- No parser gap: busybox tar, GNU tar and the engine (Go's archive/tar) must read the same
  entries as this watcher does. So every header must be unambiguous to all of them (strict
  numbers, no data behind header-only entries, one PAX header per entry, no lone zero
  blocks followed by more entries), else `ArchiveCorrupt`. Measured differences that this
  closes: busybox ignores a PAX `size` and reads on after one zero block or a header with an
  empty name; GNU tar skips no data for a regular entry whose name ends in `/`.
- setuid/setgid files are restored (fidelity) but counted and named.

Only headers are parsed (ustar, GNU long names and sparse files, PAX); file data passes
through untouched, as slices of the chunks it came in.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NoReturn

from opskit import errors

BLOCK = tarfile.BLOCKSIZE
# How many setuid/setgid file names are kept (all of them are counted).
MAX_NAMED = 100
# A metadata payload larger than this is refused (no sane name or PAX header is this big).
MAX_METADATA = 1 << 20

_ZERO_BLOCK = bytes(BLOCK)
_NONZERO = re.compile(rb"[^\x00]")
_PAX = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE)
# Entries without data: every extractor ignores their size, except GNU tar for some.
_HEADER_ONLY = (
    tarfile.LNKTYPE,
    tarfile.SYMTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
)
_KIND = {
    tarfile.CHRTYPE: "a character device node",
    tarfile.BLKTYPE: "a block device node",
}
# PAX keys that change which entry is written where; a global header must not set them.
_PLACING_KEYS = ("path", "linkpath", "size")
# File capabilities: GNU tar (--xattrs-include=*) and the engine restore them; as strong as
# setuid, so such files are counted and named like setuid ones.
CAPABILITY_KEY = "SCHILY.xattr.security.capability"
_KEPT_PAX_KEYS = frozenset(
    ("path", "linkpath", "size", "uid", "gid", "GNU.sparse.name", CAPABILITY_KEY)
)
_DIGITS = re.compile(rb" *([0-7]+)[ \x00]*")
_HIGH_BYTES = bytes(range(0x80, 0x100))
_DECIMAL = re.compile(r"[0-9]+")
_MAX_PAX_NUMBER = (1 << 63) - 1
# Old GNU sparse headers: "another sparse block follows" flags.
_SPARSE_EXTENDED_AT = 482
_SPARSE_EXTENSION_EXTENDED_AT = 504


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
    """Passes tar chunks through, parsing headers as they go by.

    Iterating raises `ArchiveUnsafe` (an entry the restore must not create) or
    `ArchiveCorrupt` (a header the extractors could read differently) before yielding the
    chunk that holds the offending header. After the end-of-archive marker only zero blocks
    are passed; later non-zero bytes are still read (so the caller's checksum covers the whole
    object) but dropped, and counted in `ignored_after_end`.

    `extractor_reads_pax_size`: whether the helper's tar takes an entry's size from a PAX
    `size` record (GNU tar and the engine do; busybox does not). If it does not, an entry
    whose PAX size differs from its header's is refused: the two would part ways there.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        allow_devices: bool = False,
        reserved_names: tuple[str, ...] = (),
        archive_name: str = "archive",
        extractor_reads_pax_size: bool = False,
    ) -> None:
        self.chunks = chunks
        self.allow_devices = allow_devices
        self.reserved_names = reserved_names  # top-level names the archive may not hold
        self.archive_name = archive_name
        self.extractor_reads_pax_size = extractor_reads_pax_size
        self.setid_files: list[str] = []  # setuid/setgid files (the first MAX_NAMED of them)
        self.setid_count = 0
        self.capability_files: list[str] = []  # files with capabilities (the first MAX_NAMED)
        self.capability_count = 0
        self.root: RootEntry | None = None
        self.owned_symlinks: list[OwnedSymlink] = []
        self.ignored_after_end = 0  # non-zero bytes after the end-of-archive marker, dropped
        self._offset = 0  # stream position of the start of the chunk being fed
        self._pending = bytearray()  # an incomplete header or metadata payload
        self._pending_at = 0  # stream position of the pending unit's start
        self._skip = 0  # data bytes (with padding) still to pass before the next header
        self._meta_type: bytes | None = None  # type of the metadata payload being collected
        self._meta_size = 0
        self._sparse_size: int | None = None  # data size after old GNU sparse extensions
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._pax: dict[str, str] | None = None
        self._first = True
        self._ended = False  # the first zero block was seen
        self._dropping = False  # non-zero bytes came after it: drop all that follows
        self._after_end = 0  # bytes passed since the end marker began
        # Paths (normalised) of the symlinks the archive created, and their names as written.
        self._symlinks: dict[str, str] = {}
        self._symlink_lengths: set[int] = set()  # of the keys of `_symlinks`

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if self._dropping:
                self.ignored_after_end += len(chunk)
                continue
            passed = self._feed(memoryview(chunk))
            self._offset += len(chunk)
            if passed == len(chunk):
                yield chunk
            else:
                self.ignored_after_end += len(chunk) - passed
                if passed:
                    yield chunk[:passed]

    # -- the stream: headers, metadata payloads, data to skip, the end --

    def _feed(self, data: memoryview) -> int:
        """Parse what `data` completes; return how many of its bytes may be passed on."""
        position, length = 0, len(data)
        while position < length:
            if self._ended:
                return position + self._trailer(data[position:])
            if self._skip:
                taken = min(self._skip, length - position)
                self._skip -= taken
                position += taken
                continue
            wanted = self._wanted()
            if not self._pending and length - position >= wanted:
                unit = bytes(data[position : position + wanted])  # whole in this chunk: no buffer
                self._pending_at = self._offset + position
                position += wanted
            else:
                if not self._pending:
                    self._pending_at = self._offset + position
                taken = min(wanted - len(self._pending), length - position)
                self._pending += data[position : position + taken]
                position += taken
                if len(self._pending) < wanted:
                    continue
                unit = bytes(self._pending)
                self._pending.clear()
            self._unit(unit)
        return length

    def _wanted(self) -> int:
        if self._meta_type is None:
            return BLOCK
        return _padded(self._meta_size)

    def _unit(self, unit: bytes) -> None:
        if self._meta_type is not None:
            self._metadata(unit)
        elif self._sparse_size is not None:
            self._sparse_extension(unit)
        else:
            self._header(unit)

    def _trailer(self, data: memoryview) -> int:
        """After the end marker: pass whole zero blocks, drop from the first non-zero one on.

        busybox tar reads on after one zero block, so whatever follows it must not arrive.
        """
        found = _NONZERO.search(data)
        if found is None:
            self._after_end += len(data)
            return len(data)
        block_start = (self._after_end + found.start()) // BLOCK * BLOCK
        passed = max(0, block_start - self._after_end)  # a block begun earlier stays short
        self._after_end += passed
        self._dropping = True
        return passed

    def _header(self, block: bytes) -> None:
        if block == _ZERO_BLOCK:
            self._ended = True
            self._after_end = BLOCK
            return
        if block[0] == 0:
            # busybox takes a header without a name for half an end marker and reads on,
            # without skipping the data the others skip.
            self._corrupt("a tar header without a name")
        if not _checksum_matches(block):
            self._corrupt("a tar header with a wrong checksum (not tar data)")
        size = _strict_number(block[124:136], allow_base256=True)
        if size is None:
            self._corrupt("a tar header with an unreadable size field")
        kind = block[156:157]
        if kind in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.XGLTYPE) or kind in (
            tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK,
        ):
            self._start_metadata(kind, size)
            return
        self._entry(block, kind, size)

    def _start_metadata(self, kind: bytes, size: int) -> None:
        if size > MAX_METADATA:
            self._corrupt(f"a metadata header of {size} bytes (more than {MAX_METADATA})")
        repeated = (
            (kind in _PAX and self._pax is not None)
            or (kind == tarfile.GNUTYPE_LONGNAME and self._long_name is not None)
            or (kind == tarfile.GNUTYPE_LONGLINK and self._long_link is not None)
        )
        if repeated:
            # Extractors disagree on which of two applies.
            self._corrupt("two metadata headers of one kind for one entry")
        self._meta_type, self._meta_size = kind, size

    def _metadata(self, payload: bytes) -> None:
        meta_type, size = self._meta_type, self._meta_size
        self._meta_type = None
        content = payload[:size]
        if meta_type == tarfile.GNUTYPE_LONGNAME:
            self._long_name = _c_string(content)
        elif meta_type == tarfile.GNUTYPE_LONGLINK:
            self._long_link = _c_string(content)
        elif meta_type == tarfile.XGLTYPE:
            records = self._parse_pax(content)
            placing = [key for key in records if key in _PLACING_KEYS or key.startswith("GNU.")]
            if placing:
                raise errors.ArchiveUnsafe(
                    f"{_escape(self.archive_name)} holds a global PAX header that sets "
                    f"{placing[0]!r} for every later entry"
                )
        else:
            self._pax = self._parse_pax(content)
            for key in ("path", "linkpath", "GNU.sparse.name"):
                if self._pax.get(key) == "":
                    # POSIX: use the header's; busybox: use "". They must not differ.
                    self._corrupt(f"a PAX header with an empty {key!r}")

    def _sparse_extension(self, block: bytes) -> None:
        if block[_SPARSE_EXTENSION_EXTENDED_AT] == 0:
            self._skip = _padded(self._sparse_size or 0)
            self._sparse_size = None

    # -- one entry: its names, its size, the rules --

    def _entry(self, block: bytes, kind: bytes, header_size: int) -> None:
        pax = self._pax or {}
        long_name, long_link = self._long_name, self._long_link
        self._pax, self._long_name, self._long_link = None, None, None
        names = _candidate_names(block, pax, long_name)
        shown = names[0]
        size = self._entry_size(shown, pax, header_size)
        if kind not in _REGULAR and kind not in _HEADER_ONLY:
            self._corrupt(f"entry {_shown(shown)} of type {kind!r}, which opskit does not restore")
        if kind in _HEADER_ONLY and size:
            self._corrupt(f"entry {_shown(shown)} has no data but declares {size} bytes")
        if kind in _REGULAR and size and any(name.endswith("/") for name in names):
            # GNU tar takes it for a directory (no data), busybox and the engine for a file.
            self._corrupt(f"entry {_shown(shown)} is a file named like a directory")
        for name in names:
            self._check_name(name, kind)
        if kind in _KIND and not self.allow_devices:
            raise errors.ArchiveUnsafe(
                f"{_escape(self.archive_name)} holds an unsafe entry {_shown(shown)}: "
                f"it is {_KIND[kind]}",
                "pass --allow-devices to restore device nodes",
            )
        if kind == tarfile.LNKTYPE:
            self._check_hardlink(shown, names, _candidate_links(block, pax, long_link))
        elif kind == tarfile.SYMTYPE:
            for name in names:
                self._add_symlink(name)
        mode = _strict_number(block[100:108], allow_base256=False, empty=0)
        uid = _pax_number(pax, "uid", _strict_number(block[108:116], True, empty=0))
        gid = _pax_number(pax, "gid", _strict_number(block[116:124], True, empty=0))
        if mode is None or uid is None or gid is None:
            self._corrupt(f"entry {_shown(shown)} has an unreadable mode or owner")
        self._note(shown, kind, mode, uid, gid)
        if CAPABILITY_KEY in pax:
            self.capability_count += 1
            if len(self.capability_files) < MAX_NAMED:
                self.capability_files.append(shown)
        if kind == tarfile.GNUTYPE_SPARSE and block[_SPARSE_EXTENDED_AT]:
            self._sparse_size = size  # extension blocks of the sparse map come first
        elif kind in _REGULAR:
            self._skip = _padded(size)

    def _entry_size(self, shown: str, pax: dict[str, str], header_size: int) -> int:
        if "size" not in pax:
            return header_size
        size = _pax_decimal(pax["size"])
        if size is None:
            self._corrupt(f"entry {_shown(shown)} has an unreadable PAX size")
        if size != header_size and not self.extractor_reads_pax_size:
            self._unsafe(
                shown,
                f"only a PAX record gives its size ({size} bytes, the header says "
                f"{header_size}), which the helper's tar ignores; restore with a helper "
                "that has GNU tar",
            )
        return size

    def _check_name(self, name: str, kind: bytes) -> None:
        shown = name
        if "\0" in name:
            self._unsafe(shown, "its name holds a NUL byte")
        if name.startswith("/"):
            self._unsafe(shown, "it is an absolute path")
        parts = _parts(name)
        if ".." in parts:
            self._unsafe(shown, "its name goes up a directory ('..')")
        if not parts:
            if kind != tarfile.DIRTYPE:
                self._unsafe(shown, "it would replace the target's root directory")
            return
        if parts[0] in self.reserved_names:
            self._unsafe(shown, "its name is reserved for opskit's own use")
        if self._symlinks:
            whole = "/".join(parts)
            for prefix in self._symlinks_above(whole):
                self._unsafe(
                    shown,
                    f"it goes through the symlink {_shown(self._symlinks[prefix])} "
                    "that the archive itself created",
                )
            if whole in self._symlinks:
                self._unsafe(
                    shown,
                    f"it replaces the symlink {_shown(self._symlinks[whole])} "
                    "that the archive itself created",
                )

    def _check_hardlink(self, shown: str, names: list[str], links: list[str]) -> None:
        for link in links:
            if "\0" in link:
                self._unsafe(shown, "its link target holds a NUL byte")
            if link.startswith("/"):
                self._unsafe(shown, f"it is a hardlink to the absolute path {_shown(link)}")
            parts = _parts(link)
            if ".." in parts:
                self._unsafe(shown, f"it is a hardlink out of the target, to {_shown(link)}")
            if not parts:
                self._unsafe(shown, "it is a hardlink to the target's root directory")
            whole = "/".join(parts)
            for prefix in self._symlinks_above(whole):
                self._unsafe(
                    shown,
                    f"it is a hardlink through the symlink {_shown(self._symlinks[prefix])} "
                    "that the archive itself created",
                )
            if whole in self._symlinks:
                # A hardlink to a symlink is that symlink under another name.
                for name in names:
                    self._add_symlink(name)

    def _add_symlink(self, name: str) -> None:
        normalised = _normalised(name)
        self._symlinks[normalised] = name
        self._symlink_lengths.add(len(normalised))

    def _symlinks_above(self, whole: str) -> Iterator[str]:
        """The archive's symlinks that are directories above the normalised path `whole`,
        nearest the root first. Only the prefixes as long as some symlink are cut out, so a
        name of a million components takes linear time, not quadratic."""
        slash = whole.find("/")
        while slash >= 0:
            if slash in self._symlink_lengths and whole[:slash] in self._symlinks:
                yield whole[:slash]
            slash = whole.find("/", slash + 1)

    def _note(self, shown: str, kind: bytes, mode: int, uid: int, gid: int) -> None:
        """Remember what the restore applies itself, and what it reports."""
        if self._first:
            self._first = False
            if kind == tarfile.DIRTYPE and not _parts(shown):
                self.root = RootEntry(mode=mode & 0o7777, uid=uid, gid=gid)
        if kind == tarfile.SYMTYPE and (uid, gid) != (0, 0):
            self.owned_symlinks.append(OwnedSymlink(path=shown, uid=uid, gid=gid))
        if kind in _REGULAR and mode & 0o6000:
            self.setid_count += 1
            if len(self.setid_files) < MAX_NAMED:
                self.setid_files.append(shown)

    # -- parsing helpers that need the archive's name for their errors --

    def _parse_pax(self, content: bytes) -> dict[str, str]:
        """Parse PAX records strictly; keep the keys we use (xattr values can be large)."""
        return parse_pax_records(content, _is_kept_pax_key, self._corrupt)

    def _unsafe(self, shown: str, reason: str) -> NoReturn:
        raise errors.ArchiveUnsafe(
            f"{_escape(self.archive_name)} holds an unsafe entry {_shown(shown)}: {reason}"
        )

    def _corrupt(self, what: str) -> NoReturn:
        raise errors.ArchiveCorrupt(
            f"{_escape(self.archive_name)} is corrupt: {what} at byte {self._pending_at}",
            "restore another backup (opskit volume list)",
        )


def _candidate_names(block: bytes, pax: dict[str, str], long_name: str | None) -> list[str]:
    """Every name an extractor may give this entry, the likeliest first: they differ in
    which of GNU sparse name, PAX path and GNU long name wins (busybox ignores the first), and
    in the use of the ustar prefix."""
    names = [pax.get("GNU.sparse.name"), pax.get("path"), long_name]
    if pax.get("path") is None and long_name is None:
        # Only then is the ustar name used (with a long name it is a truncated copy).
        name = _c_string(block[0:100])
        prefix = _c_string(block[345:500])
        names += [f"{prefix}/{name}" if prefix else None, name]
    return list(dict.fromkeys(found for found in names if found is not None))


def _candidate_links(block: bytes, pax: dict[str, str], long_link: str | None) -> list[str]:
    links = [pax.get("linkpath"), long_link]
    if pax.get("linkpath") is None and long_link is None:
        links.append(_c_string(block[157:257]))
    return list(dict.fromkeys(found for found in links if found is not None))


def _c_string(field: bytes) -> str:
    """A name field as C extractors read it: up to the first NUL."""
    end = field.find(b"\0")
    return (field if end < 0 else field[:end]).decode("utf-8", "surrogateescape")


def _checksum_matches(block: bytes) -> bool:
    """Whether the header's checksum field holds the sum of its bytes (the field itself taken
    as spaces), unsigned as POSIX says or signed as old Sun tars wrote it."""
    recorded = _strict_number(block[148:156], allow_base256=False)
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    if recorded is None or recorded == unsigned:
        return recorded is not None
    high_bytes = len(block) - len(block.translate(None, _HIGH_BYTES))
    high_bytes -= len(block[148:156]) - len(block[148:156].translate(None, _HIGH_BYTES))
    return recorded == unsigned - 256 * high_bytes


def _strict_number(field: bytes, allow_base256: bool, empty: int | None = None) -> int | None:
    """Read a numeric header field the way every extractor reads it alike: octal digits with
    spaces before and spaces or NULs after, or GNU's positive base-256. Return None for
    anything else (Python's tarfile also accepts `+7`, `0o7`, `7_0`; GNU tar then skips ahead
    to the next block that looks like a header). A field of only NULs and spaces is `empty`.
    """
    if allow_base256 and field[0] == 0x80:
        return int.from_bytes(field[1:], "big")
    match = _DIGITS.fullmatch(field)
    if match:
        return int(match.group(1), 8)
    if empty is not None and not field.strip(b" \0"):
        return empty
    return None


def _pax_number(pax: dict[str, str], key: str, default: int | None) -> int | None:
    if key not in pax:
        return default
    return _pax_decimal(pax[key])


def _pax_decimal(value: str) -> int | None:
    """A PAX record's decimal number, or None if it is no number or larger than the engine's
    Go `strconv.ParseInt(value, 10, 64)` reads (which also keeps `int()` from refusing a
    value of thousands of digits with a ValueError)."""
    if not _DECIMAL.fullmatch(value):
        return None
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(_MAX_PAX_NUMBER)):
        return None
    number = int(digits)
    return number if number <= _MAX_PAX_NUMBER else None


def _parts(name: str) -> list[str]:
    """Path components as the kernel resolves them: `./a//b/` is `a`, `b`."""
    return [part for part in name.split("/") if part not in ("", ".")]


def _normalised(name: str) -> str:
    return "/".join(_parts(name))


def parse_pax_records(
    content: bytes, keep: Callable[[str], bool], corrupt: Callable[[str], NoReturn]
) -> dict[str, str]:
    """Given a PAX header's payload (`<length> <key>=<value>\\n` records), return the records
    whose key `keep` accepts. Call `corrupt(what)` (which raises) on any malformed record."""
    records: dict[str, str] = {}
    position = 0
    while position < len(content):
        space = content.find(b" ", position, position + 20)
        digits = content[position:space] if space > position else b""
        if not digits.isdigit():
            corrupt("a malformed PAX header (a record without a length)")
        end = position + int(digits)
        if end <= space + 1 or end > len(content) or content[end - 1] != 0x0A:
            corrupt("a malformed PAX header (a record of the wrong length)")
        key, equals, value = content[space + 1 : end - 1].partition(b"=")
        if not equals or not key:
            corrupt("a malformed PAX header (a record without a key)")
        text_key = key.decode("utf-8", "surrogateescape")
        if keep(text_key):
            records[text_key] = value.decode("utf-8", "surrogateescape")
        position = end
    return records


def _is_kept_pax_key(key: str) -> bool:
    return key in _KEPT_PAX_KEYS or key in _PLACING_KEYS or key.startswith("GNU.")


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


_SURROGATE = re.compile(r"\\udc([89a-f][0-9a-f])")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _shown(name: str) -> str:
    """A name from the archive, quoted and escaped like `repr` (raw bytes as `\\xff`), so no
    control character reaches a terminal."""
    return _SURROGATE.sub(r"\\x\1", repr(name))


def _escape(text: str) -> str:
    return _UNPRINTABLE.sub(lambda match: repr(match.group())[1:-1], text)

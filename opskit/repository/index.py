"""The record index: one object in the store holding a copy of every backup record, so that
listing a store reads two objects (the listing and the index), not one per backup.

The metadata files stay the truth; the index only saves reading them. Each entry is keyed by
its metadata object's name, size and version (S3's ETag, a local file's inode and mtime) as the
store lists them. An entry whose key the store no longer lists is ignored and that file read as
before, and every record taken from the index passes the same checks as one read from its file.
So a stale, lost, damaged or forged index costs reads, never a wrong listing: someone who can
write the index can write the metadata files too.

Writers refresh it after their record is written. Two writers at once may each miss the
other's record; the next reader then reads that one file, and the next writer adds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opskit import errors, untrusted
from opskit.log import get_logger
from opskit.storage.base import ObjectInfo, Storage

log = get_logger(__name__)

INDEX_NAME = "index/records.json"
INDEX_FORMAT = 1
MAX_INDEX_BYTES = 64 * untrusted.MIB  # about 60,000 records; a bigger index is ignored

Key = tuple[str, int, str]  # (metadata object name, size, version)


@dataclass(frozen=True)
class Entry:
    """A metadata object as listed, and the record document it held when read."""

    info: ObjectInfo
    document: dict[str, Any]

    @property
    def key(self) -> Key:
        return key_of(self.info)


def key_of(info: ObjectInfo) -> Key:
    return (info.name, info.size, info.version)


def read(storage: Storage, wanted: set[Key]) -> tuple[dict[Key, dict[str, Any]], int]:
    """Return the stored index's documents of the keys in `wanted` (the metadata objects the
    store lists now), and how many entries it holds in all (more than were wanted: it is
    stale); nothing if there is no index or it is unusable."""
    try:
        info = storage.stat(INDEX_NAME)
        if info.size > MAX_INDEX_BYTES:
            raise ValueError(f"larger than {untrusted.describe_size(MAX_INDEX_BYTES)}")
        text = storage.read_bytes(INDEX_NAME).decode("utf-8")
        found, count = {}, 0
        for key, record in entries_of(text):
            count += 1
            if key in wanted:
                found[key] = record
        return found, count
    except errors.NotFound:
        return {}, 0
    except (errors.StorageError, ValueError, RecursionError) as exc:
        log.debug("record index passed over", reason=untrusted.printable(str(exc)))
        return {}, 0


_HEAD = f'{{"format":{INDEX_FORMAT},"entries":['
_DECODER = json.JSONDecoder()


def entries_of(text: str) -> Iterator[tuple[Key, dict[str, Any]]]:
    """The well-typed entries of an index, as `write` lays it out; `ValueError` if it is not one.

    Entries are decoded one at a time, so that memory is the text and the entries kept, not a
    whole forged document: JSON of empty objects costs 25 times its size as Python objects.
    """
    if not text.startswith(_HEAD):
        raise ValueError("not an index of this format")
    position = len(_HEAD)
    if text.startswith("]", position):
        position += 1
    else:
        while True:
            item, position = _DECODER.raw_decode(text, position)
            entry = _entry_of(item)
            if entry is not None:
                yield entry
            separator = text[position : position + 1]
            position += 1
            if separator == "]":
                break
            if separator != ",":
                raise ValueError("not an index of this format")
    if text[position:] != "}":
        raise ValueError("not an index of this format")


def _entry_of(item: object) -> tuple[Key, dict[str, Any]] | None:
    if not isinstance(item, dict):
        return None
    name, size, version = item.get("name"), item.get("size"), item.get("version")
    document = item.get("record")
    if (
        isinstance(name, str)
        and type(size) is int  # not a bool, which would equal 1 as a key
        and isinstance(version, str)
        and version
        and isinstance(document, dict)
    ):
        return (name, size, version), document
    return None


def write(storage: Storage, entries: list[Entry]) -> None:
    """Replace the stored index with `entries` (those whose store gives versions)."""
    items = [
        {"name": e.info.name, "size": e.info.size, "version": e.info.version, "record": e.document}
        for e in entries
        if e.info.version
    ]
    text = json.dumps({"format": INDEX_FORMAT, "entries": items}, separators=(",", ":"))
    storage.write_bytes(INDEX_NAME, text.encode())

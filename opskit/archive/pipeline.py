"""The byte pipeline between a tar stream and a stored archive: compress, hash, count.

Backup:  tar bytes -> [compress] -> [encrypt: later] -> hash+count -> storage writer
Restore: storage reader -> hash+count -> [decrypt: later] -> [decompress] -> tar bytes

Each stage is a small file-like object wrapping the next one, so a new stage (age encryption)
slots in between without touching the others. Memory is bounded by the chunk size: nothing
buffers a whole archive.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import zstandard

from opskit import errors

CHUNK_SIZE = 1 << 20
COMPRESSIONS = ("zstd", "gzip", "none")
SUFFIXES = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}
ZSTD_LEVEL = 3
GZIP_LEVEL = 6

ProgressCallback = Callable[[int], None]


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


@dataclass(frozen=True)
class Digest:
    """What the pipeline measured: stored bytes, their sha256, and tar bytes before compression."""

    size: int
    sha256: str
    tar_size: int


class HashingSink:
    """Passes bytes on to `sink`, counting them and hashing them with sha256."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        """Compressors call flush on their output; the storage writer flushes on commit."""


class ArchiveWriter:
    """Accepts tar bytes, writes the compressed archive to `sink`. Call `finish()` at the end."""

    def __init__(
        self, sink: Sink, compression: str, on_progress: ProgressCallback | None = None
    ) -> None:
        if compression not in COMPRESSIONS:
            raise errors.UsageError(
                f"unknown compression {compression!r}", f"use one of {', '.join(COMPRESSIONS)}"
            )
        self.stored = HashingSink(sink)
        self.on_progress = on_progress
        self.tar_size = 0
        self._compressor = _open_compressor(compression, self.stored)

    def write(self, data: bytes | memoryview) -> int:
        self.tar_size += len(data)
        self._compressor.write(data)
        if self.on_progress is not None:
            self.on_progress(len(data))
        return len(data)

    def finish(self) -> Digest:
        """Flush the compressor's last frame; return what was written."""
        self._compressor.close()
        return Digest(self.stored.size, self.stored.hash.hexdigest(), self.tar_size)


class _PassThrough:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, data: bytes | memoryview) -> int:
        return self.sink.write(data)

    def close(self) -> None:
        pass


def _open_compressor(compression: str, sink: HashingSink):  # noqa: ANN202 - three file-likes
    if compression == "zstd":
        # threads=-1: one worker per core; compression runs beside the reading thread.
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
        return compressor.stream_writer(sink, write_size=CHUNK_SIZE, closefd=False)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[arg-type]
    return _PassThrough(sink)


class HashingReader:
    """Reads from `stream`, hashing and counting what passes; reports progress in stored bytes."""

    def __init__(self, stream: BinaryIO, on_progress: ProgressCallback | None = None) -> None:
        self.stream = stream
        self.hash = hashlib.sha256()
        self.size = 0
        self.on_progress = on_progress

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.hash.update(data)
        self.size += len(data)
        if self.on_progress is not None and data:
            self.on_progress(len(data))
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read what the decompressor left (e.g. trailing padding) so the hash covers it all."""
        while self.read(CHUNK_SIZE):
            pass


def tar_chunks(
    stored: HashingReader, compression: str, archive_name: str = "archive"
) -> Iterator[bytes]:
    """Yield the tar bytes of a stored archive, read through `stored`.

    Raise `ArchiveCorrupt` if it cannot be decompressed. The caller checks `stored.hash` and
    `stored.size` against the metadata once this is exhausted.
    """
    try:
        if compression == "zstd":
            decompressor = zstandard.ZstdDecompressor()
            reader = decompressor.stream_reader(
                stored, read_size=CHUNK_SIZE, read_across_frames=True, closefd=False
            )
            # It ends quietly when input stops inside a frame: the caller's size and sha256
            # check is what catches a truncated archive.
            yield from _read_chunks(reader)
        elif compression == "gzip":
            with gzip.GzipFile(fileobj=stored, mode="rb") as reader:  # type: ignore[arg-type]
                yield from _read_chunks(reader)
        elif compression == "none":
            yield from _read_chunks(stored)
        else:
            raise errors.ArchiveCorrupt(f"{archive_name}: unknown compression {compression!r}")
        stored.drain()
    except (zstandard.ZstdError, OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno:
            raise  # a real I/O error, classified by the caller
        raise errors.ArchiveCorrupt(
            f"{archive_name} is corrupt or truncated ({exc})",
            "restore another backup (opskit volume list)",
        ) from exc


def _read_chunks(reader: BinaryIO) -> Iterator[bytes]:
    while chunk := reader.read(CHUNK_SIZE):
        yield chunk


def verify_digest(
    stored: HashingReader, expected_sha256: str, expected_size: int, name: str
) -> None:
    """Raise `ChecksumMismatch` unless what was read matches the recorded size and sha256."""
    actual = stored.hash.hexdigest()
    if stored.size != expected_size or actual != expected_sha256:
        raise errors.ChecksumMismatch(
            f"{name} does not match its recorded checksum "
            f"(sha256 {actual[:12]}… of {stored.size} bytes, expected {expected_sha256[:12]}… "
            f"of {expected_size} bytes)",
            "the archive was altered or truncated; restore another backup",
        )

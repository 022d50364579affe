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
from typing import BinaryIO

import zstandard

from opskit import errors
from opskit.archive import threads
from opskit.archive.threads import BackgroundSink

CHUNK_SIZE = threads.CHUNK_SIZE
COMPRESSIONS = ("zstd", "gzip", "none")
SUFFIXES = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}
ZSTD_LEVEL = 3
ZSTD_JOB_SIZE = 4 << 20
GZIP_LEVEL = 6

ProgressCallback = Callable[[int], None]


Sink = threads.Sink
Readable = threads.Readable


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
        # Hashing and storage writes run in a thread beside the compressor (see threads.py).
        self._background = BackgroundSink(self.stored)
        self._compressor = _open_compressor(compression, self._background)

    def write(self, data: bytes | memoryview) -> int:
        self.tar_size += len(data)
        self._compressor.write(data)
        if self.on_progress is not None:
            self.on_progress(len(data))
        return len(data)

    def finish(self) -> Digest:
        """Flush the compressor's last frame and wait for the writes; return what was written."""
        try:
            self._compressor.close()
            self._background.finish()
        except BaseException:
            self.abort()
            raise
        return Digest(self.stored.size, self.stored.hash.hexdigest(), self.tar_size)

    def abort(self) -> None:
        """Stop the writer thread; the caller aborts the storage object."""
        self._background.abort()


class _PassThrough:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, data: bytes | memoryview) -> int:
        return self.sink.write(data)

    def close(self) -> None:
        pass


def _open_compressor(compression: str, sink: Sink):  # noqa: ANN202 - three file-likes
    if compression == "zstd":
        # threads=-1: one worker per core; compression runs beside the reading thread.
        # 4 MiB jobs instead of the default 8: measured ~30 MB less peak RSS, same ratio.
        parameters = zstandard.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL, threads=-1, job_size=ZSTD_JOB_SIZE
        )
        compressor = zstandard.ZstdCompressor(compression_params=parameters)
        return compressor.stream_writer(sink, write_size=CHUNK_SIZE, closefd=False)  # type: ignore[arg-type]
    if compression == "gzip":
        return gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[call-overload]
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


def tar_chunks(
    stored: Readable, compression: str, archive_name: str = "archive"
) -> Iterator[bytes]:
    """Yield the tar bytes of a stored archive, read from `stored` to its very end.

    Decompression runs in its own thread, one bounded queue ahead. Raise `ArchiveCorrupt` if the
    archive cannot be decompressed. A truncated zstd archive ends quietly: the caller's size
    and sha256 check (`verify_digest`) is what catches it.
    """
    if compression not in COMPRESSIONS:
        raise errors.ArchiveCorrupt(f"{archive_name}: unknown compression {compression!r}")
    try:
        yield from threads.ProducedChunks(lambda sink: _decompress(stored, compression, sink))
    except (zstandard.ZstdError, OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno:
            raise  # a real I/O error, classified by the caller
        raise errors.ArchiveCorrupt(
            f"{archive_name} is corrupt or truncated ({exc})",
            "restore another backup (opskit volume list)",
        ) from exc


def _decompress(stored: Readable, compression: str, sink: Sink) -> None:
    if compression == "zstd":
        # stream_writer releases the GIL and reads across frames; stream_reader does neither.
        writer = zstandard.ZstdDecompressor().stream_writer(
            sink,  # type: ignore[arg-type]
            write_size=CHUNK_SIZE,
            closefd=False,
        )
        for chunk in _read_chunks(stored):
            writer.write(chunk)
        writer.flush()
    elif compression == "gzip":
        with gzip.GzipFile(fileobj=stored, mode="rb") as reader:  # type: ignore[call-overload]
            for chunk in _read_chunks(reader):
                sink.write(chunk)
    else:
        for chunk in _read_chunks(stored):
            sink.write(chunk)
    # Read what the decompressor left (trailing bytes) so the hash covers the whole object.
    while stored.read(CHUNK_SIZE):
        pass


def _read_chunks(reader: Readable) -> Iterator[bytes]:
    while chunk := reader.read(CHUNK_SIZE):
        yield chunk


def verify_digest(
    stored: HashingReader, expected_sha256: str, expected_size: int, name: str
) -> None:
    """Raise `ChecksumMismatch` unless what was read matches the recorded size and sha256."""
    actual = stored.hash.hexdigest()
    if stored.size != expected_size or actual != expected_sha256:
        raise errors.ChecksumMismatch(
            f"{name} is corrupt: it does not match its recorded checksum "
            f"(sha256 {actual[:12]}… of {stored.size} bytes, expected {expected_sha256[:12]}… "
            f"of {expected_size} bytes)",
            "the archive was altered or truncated; restore another backup",
        )

"""The byte pipeline between a tar stream and a stored archive: a list of stages, then hash.

Backup:  tar bytes -> [zstd | gzip] -> [age] -> hash+count -> storage writer
Restore: storage reader -> hash+count -> [age] -> [zstd | gzip] -> tar bytes

A `Stage` has a name, a file suffix, a writer over a sink and a reader over a readable. The
metadata records the stage names in order (`stages`), and a restore builds its readers from
that record. Memory is bounded by the chunk size: nothing buffers a whole archive.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

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


@dataclass(frozen=True)
class Stage:
    """One step between tar bytes and stored bytes. `open_writer(sink)` returns a writer
    (write, close; abort if it runs a thread) that transforms into `sink`; `open_reader(
    readable, name)` returns a readable of what it undoes (close stops its thread)."""

    name: str
    suffix: str
    open_writer: Callable[[Sink], Any]
    open_reader: Callable[[Readable, str], Any]


def compression_stages(compression: str) -> list[Stage]:
    """The stages of a compression name (none for "none"). Raise `UsageError` if unknown."""
    if compression not in COMPRESSIONS:
        raise errors.UsageError(
            f"unknown compression {compression!r}", f"use one of {', '.join(COMPRESSIONS)}"
        )
    if compression == "none":
        return []
    return [Stage(compression, SUFFIXES[compression][len(".tar") :],
                  lambda sink: _open_compressor(compression, sink),
                  lambda readable, name: _decompressed(readable, compression))]  # fmt: skip


def archive_suffix(stage_names: list[str]) -> str:
    """`.tar` and each stage's suffix: `.tar.zst.age`."""
    suffixes = {"zstd": ".zst", "gzip": ".gz", "age": ".age"}
    return ".tar" + "".join(suffixes[name] for name in stage_names)


class ArchiveWriter:
    """Accepts tar bytes, writes them through `stages` to `sink`. Call `finish()` at the end."""

    def __init__(
        self,
        sink: Sink,
        stages: list[Stage] | str,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        if isinstance(stages, str):
            stages = compression_stages(stages)
        self.stored = HashingSink(sink)
        self.on_progress = on_progress
        self.tar_size = 0
        # Hashing and storage writes run in a thread beside the compressor (see threads.py).
        self._background = BackgroundSink(self.stored)
        self._writers: list[Any] = []  # outermost (first written to) first
        inner: Sink = self._background
        for stage in reversed(stages):
            inner = stage.open_writer(inner)
            self._writers.insert(0, inner)
        self._first: Sink = inner

    def write(self, data: bytes | memoryview) -> int:
        self.tar_size += len(data)
        self._first.write(data)
        if self.on_progress is not None:
            self.on_progress(len(data))
        return len(data)

    def finish(self) -> Digest:
        """Flush each stage's last bytes, in order, and wait for the writes; return what was
        written."""
        try:
            for writer in self._writers:
                writer.close()
            self._background.finish()
        except BaseException:
            self.abort()
            raise
        return Digest(self.stored.size, self.stored.hash.hexdigest(), self.tar_size)

    def abort(self) -> None:
        """Stop the stages' and the writer's threads; the caller aborts the storage object."""
        for writer in self._writers:
            abort = getattr(writer, "abort", None)
            if abort is not None:
                abort()
        self._background.abort()


def _open_compressor(compression: str, sink: Sink):  # noqa: ANN202 - three file-likes
    if compression == "zstd":
        # threads=-1: one worker per core; compression runs beside the reading thread.
        # 4 MiB jobs instead of the default 8: measured ~30 MB less peak RSS, same ratio.
        parameters = zstandard.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL, threads=-1, job_size=ZSTD_JOB_SIZE
        )
        compressor = zstandard.ZstdCompressor(compression_params=parameters)
        return compressor.stream_writer(sink, write_size=CHUNK_SIZE, closefd=False)  # type: ignore[arg-type]
    return gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[call-overload]


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
    stored: Readable, stages: list[Stage] | str, archive_name: str = "archive"
) -> Iterator[bytes]:
    """Yield the tar bytes of a stored archive, read from `stored` to its very end.

    Each stage's reader runs in its own thread, one bounded queue ahead. Raise `ArchiveCorrupt`
    if the archive cannot be decompressed (or decrypted: `WrongKey` without the right
    identity). A truncated zstd archive ends quietly: the caller's size and sha256 check
    (`verify_digest`) is what catches it.
    """
    if isinstance(stages, str):
        if stages not in COMPRESSIONS:
            raise errors.ArchiveCorrupt(f"{archive_name}: unknown compression {stages!r}")
        stages = compression_stages(stages)
    readers: list[Any] = []
    readable: Readable = stored
    try:
        for stage in reversed(stages):
            readable = stage.open_reader(readable, archive_name)
            readers.append(readable)
        while chunk := readable.read(CHUNK_SIZE):
            yield chunk
        # Read what the stages left (trailing bytes) so the hash covers the whole object.
        while stored.read(CHUNK_SIZE):
            pass
    except (zstandard.ZstdError, OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno:
            raise  # a real I/O error, classified by the caller
        raise errors.ArchiveCorrupt(
            f"{archive_name} is corrupt or truncated ({exc})",
            "restore another backup (opskit volume list)",
        ) from exc
    finally:
        for reader in reversed(readers):
            reader.close()


def _decompressed(stored: Readable, compression: str) -> ChunkReader:
    return ChunkReader(threads.ProducedChunks(lambda sink: _decompress(stored, compression, sink)))


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
    else:
        with gzip.GzipFile(fileobj=stored, mode="rb") as reader:  # type: ignore[call-overload]
            for chunk in _read_chunks(reader):
                sink.write(chunk)


class ChunkReader:
    """A readable over a `ProducedChunks` (a stage's thread); `close()` stops the thread."""

    def __init__(self, produced: threads.ProducedChunks) -> None:
        self._produced = produced
        self._chunks = iter(produced)
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = CHUNK_SIZE
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = memoryview(chunk)
        piece = bytes(self._buffer[:size])
        self._buffer = self._buffer[len(piece) :]
        return piece

    def close(self) -> None:
        self._produced.close()


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

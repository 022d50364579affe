"""The byte pipeline: compress + hash + count on the way out, hash + decompress on the way in."""

from __future__ import annotations

import gzip
import hashlib
import io
import os

import pytest
import zstandard

from opskit import errors
from opskit.archive.pipeline import (
    COMPRESSIONS,
    ArchiveWriter,
    HashingReader,
    tar_chunks,
    verify_digest,
)

MiB = 1 << 20


class CollectingSink:
    """A storage writer stand-in that keeps what it receives."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, data: bytes | memoryview) -> int:
        return self.buffer.write(data)

    @property
    def size(self) -> int:
        return self.buffer.tell()


def _payload() -> bytes:
    """Some incompressible and some compressible bytes, not a multiple of any chunk size."""
    text = b"".join(b"log line %d: all is well\n" % number for number in range(40000))
    return os.urandom(3 * MiB + 12345) + text


def _compress(data: bytes, compression: str, chunk: int = 300_000) -> tuple[bytes, ArchiveWriter]:
    sink = CollectingSink()
    writer = ArchiveWriter(sink, compression)
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])
    writer.digest = writer.finish()  # type: ignore[attr-defined]
    return sink.buffer.getvalue(), writer


def _decompress(stored: bytes, compression: str) -> tuple[bytes, HashingReader]:
    reader = HashingReader(io.BytesIO(stored))
    return b"".join(tar_chunks(reader, compression, "test.tar")), reader


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_archive_writer_round_trip_through_tar_chunks(compression):
    data = _payload()

    stored, writer = _compress(data, compression)
    restored, reader = _decompress(stored, compression)

    assert restored == data
    digest = writer.digest  # type: ignore[attr-defined]
    assert digest.size == len(stored)
    assert digest.sha256 == hashlib.sha256(stored).hexdigest()
    assert digest.tar_size == len(data)
    assert reader.size == len(stored)
    verify_digest(reader, digest.sha256, digest.size, "test.tar")


@pytest.mark.parametrize(
    ("compression", "decompress"),
    [
        ("zstd", lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)),
        ("gzip", gzip.decompress),
        ("none", lambda data: data),
    ],
)
def test_archive_writer_output_is_a_standard_stream(compression, decompress):
    data = _payload()

    stored, _ = _compress(data, compression)

    assert decompress(stored) == data


def test_archive_writer_rejects_an_unknown_compression():
    with pytest.raises(errors.UsageError, match="bogus"):
        ArchiveWriter(CollectingSink(), "bogus")


def test_archive_writer_reports_progress_in_tar_bytes():
    seen: list[int] = []
    writer = ArchiveWriter(CollectingSink(), "zstd", on_progress=seen.append)

    for _ in range(5):
        writer.write(b"x" * 1000)
    writer.finish()

    assert sum(seen) == 5000


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_archive_writer_streams_without_buffering_the_archive(compression):
    """Memory does not grow with the volume: stored bytes reach the sink before the end."""
    sink = CollectingSink()
    writer = ArchiveWriter(sink, compression)
    total = 48 * MiB

    for _ in range(total // MiB):
        writer.write(os.urandom(MiB))  # distinct blocks: nothing for zstd to fold
    before_finish = sink.size
    writer.finish()

    assert before_finish >= total // 2, f"only {before_finish} of {sink.size} bytes written early"


def test_tar_chunks_reads_the_archive_lazily():
    """Restore memory is bounded too: the first tar bytes come long before the archive is read."""
    stored = os.urandom(96 * MiB)
    source = io.BytesIO(stored)
    reader = HashingReader(source)
    chunks = tar_chunks(reader, "none", "big.tar")

    first = next(chunks)
    read_so_far = source.tell()
    chunks.close()

    assert first == stored[: len(first)]
    assert read_so_far <= 48 * MiB, f"read {read_so_far} bytes before yielding the first chunk"


def test_tar_chunks_reads_across_zstd_frames():
    """`cat a.zst b.zst` is a valid zstd stream (zstd -d reads it); so must opskit."""
    first = zstandard.ZstdCompressor().compress(b"first frame\n")
    second = zstandard.ZstdCompressor().compress(b"second frame\n")

    restored, reader = _decompress(first + second, "zstd")

    assert restored == b"first frame\nsecond frame\n"
    assert reader.size == len(first) + len(second)


def test_tar_chunks_hashes_every_stored_byte_even_after_the_data_ends():
    stored, writer = _compress(b"tar bytes" * 1000, "none")
    digest = writer.digest  # type: ignore[attr-defined]

    _, reader = _decompress(stored + b"appended", "none")

    assert reader.size == len(stored) + len(b"appended")
    with pytest.raises(errors.ChecksumMismatch):
        verify_digest(reader, digest.sha256, digest.size, "test.tar")


def _flip_middle(data: bytes) -> bytes:
    damaged = bytearray(data)
    middle = len(damaged) // 2
    for index in range(middle, middle + 32):
        damaged[index] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_tar_chunks_raises_archive_corrupt_for_damaged_compressed_data(compression):
    text = b"".join(b"line %d\n" % number for number in range(200_000))
    stored, _ = _compress(text, compression)

    with pytest.raises(errors.ArchiveCorrupt, match="test.tar"):
        _decompress(_flip_middle(stored), compression)


def test_tar_chunks_raises_archive_corrupt_for_garbage_after_a_zstd_frame():
    stored, _ = _compress(b"data" * 1000, "zstd")

    with pytest.raises(errors.ArchiveCorrupt):
        _decompress(stored + b"trailing garbage", "zstd")


def test_tar_chunks_raises_archive_corrupt_for_a_file_that_is_not_gzip():
    with pytest.raises(errors.ArchiveCorrupt):
        _decompress(b"this is not gzip at all" * 10, "gzip")


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_truncated_archive_is_caught_by_decompression_or_the_digest(compression):
    data = _payload()
    stored, writer = _compress(data, compression)
    digest = writer.digest  # type: ignore[attr-defined]
    truncated = stored[: len(stored) // 2]

    with pytest.raises(errors.ArchiveCorrupt):  # ChecksumMismatch is an ArchiveCorrupt
        _, reader = _decompress(truncated, compression)
        verify_digest(reader, digest.sha256, digest.size, "test.tar")


def test_tar_chunks_rejects_an_unknown_compression():
    with pytest.raises(errors.ArchiveCorrupt, match="unknown compression"):
        _decompress(b"data", "lz4")


def test_verify_digest_passes_on_a_match():
    reader = HashingReader(io.BytesIO(b"abc"))
    reader.read()

    verify_digest(reader, hashlib.sha256(b"abc").hexdigest(), 3, "a.tar")


@pytest.mark.parametrize(
    ("sha256", "size"),
    [("0" * 64, 3), (hashlib.sha256(b"abc").hexdigest(), 4)],
    ids=["wrong-sha256", "wrong-size"],
)
def test_verify_digest_raises_checksum_mismatch_naming_the_archive(sha256, size):
    reader = HashingReader(io.BytesIO(b"abc"))
    reader.read()

    with pytest.raises(errors.ChecksumMismatch, match="a.tar") as raised:
        verify_digest(reader, sha256, size, "a.tar")

    assert raised.value.exit_code == 1


def test_hashing_reader_counts_hashes_and_reports_progress():
    seen: list[int] = []
    reader = HashingReader(io.BytesIO(b"0123456789"), on_progress=seen.append)

    parts = [reader.read(4), reader.read(4), reader.read(4), reader.read(4)]

    assert parts == [b"0123", b"4567", b"89", b""]
    assert reader.size == 10
    assert reader.hash.hexdigest() == hashlib.sha256(b"0123456789").hexdigest()
    assert seen == [4, 4, 2]

"""One storage behaviour suite, run against every implementation (local directory, S3).

The same tests, the same expectations: what a backup or restore may rely on, whatever the
store. S3 runs against moto_server on loopback with 5 MiB parts (S3's minimum), so that "large"
objects span several multipart parts.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from opskit import errors
from opskit.config.targets import TargetConfig
from opskit.storage.base import Storage
from opskit.storage.local import LocalStorage
from opskit.storage.registry import open_storage

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PART_SIZE = 5 * MiB
CHUNK = MiB


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A fresh, empty store of each kind."""
    if request.param == "local":
        store: Storage = LocalStorage(tmp_path / "store")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        request.getfixturevalue("s3_env")
        from opskit.storage.s3 import S3Storage

        store = S3Storage.from_target(
            TargetConfig(url=f"s3://{bucket}/conformance/prefix", part_size=PART_SIZE)
        )
    yield store
    store.close()


def names(storage: Storage, prefix: str = "") -> list[str]:
    return [info.name for info in storage.list(prefix)]


def read_all(storage: Storage, name: str, size: int = CHUNK) -> bytes:
    """Read an object through its stream in `size` reads, as restore does."""
    pieces = []
    with storage.open(name) as stream:
        while chunk := stream.read(size):
            pieces.append(chunk)
    return b"".join(pieces)


def test_round_trip_of_chunks_of_every_buffer_type(storage: Storage) -> None:
    with storage.create("vol/one.tar.zst") as writer:
        assert writer.write(b"bytes,") == 6
        assert writer.write(bytearray(b"bytearray,")) == 10
        assert writer.write(memoryview(b"xxmemoryview")[2:]) == 10
        writer.flush()
    assert read_all(storage, "vol/one.tar.zst", size=3) == b"bytes,bytearray,memoryview"
    info = storage.stat("vol/one.tar.zst")
    assert (info.name, info.size) == ("vol/one.tar.zst", 26)
    assert info.version  # both stores tell content versions apart (the record index needs it)
    assert [item.version for item in storage.list("vol/")] == [info.version]


def test_empty_object_round_trip(storage: Storage) -> None:
    with storage.create("empty"):
        pass
    assert storage.stat("empty").size == 0
    assert read_all(storage, "empty") == b""


def test_read_bytes_and_write_bytes(storage: Storage) -> None:
    storage.write_bytes("meta/backup.json", b'{"id": 1}')
    assert storage.read_bytes("meta/backup.json") == b'{"id": 1}'


def test_nothing_is_visible_before_commit(storage: Storage) -> None:
    writer = storage.create("pending.tar.zst")
    writer.write(b"x" * 1000)
    assert names(storage) == []
    with pytest.raises(errors.NotFound):
        storage.stat("pending.tar.zst")
    writer.commit()
    assert names(storage) == ["pending.tar.zst"]


def test_abort_leaves_nothing_and_may_be_repeated(storage: Storage) -> None:
    writer = storage.create("aborted.tar.zst")
    writer.write(b"y" * 1000)
    writer.abort()
    writer.abort()
    assert names(storage) == []
    with pytest.raises(errors.NotFound):
        storage.open("aborted.tar.zst")


def test_exception_inside_the_writer_leaves_nothing(storage: Storage) -> None:
    with pytest.raises(RuntimeError, match="producer failed"):
        with storage.create("broken.tar.zst") as writer:
            writer.write(b"z" * 1000)
            raise RuntimeError("producer failed")
    assert names(storage) == []


def test_exception_after_several_parts_leaves_nothing(storage: Storage) -> None:
    with pytest.raises(RuntimeError, match="producer failed"):
        with storage.create("broken-large.tar.zst") as writer:
            for _ in range(12):  # 12 MiB: two full parts uploaded on S3
                writer.write(os.urandom(CHUNK))
            raise RuntimeError("producer failed")
    assert names(storage) == []


def test_commit_replaces_an_existing_object(storage: Storage) -> None:
    storage.write_bytes("latest", b"old content")
    writer = storage.create("latest")
    writer.write(b"new")
    assert storage.read_bytes("latest") == b"old content"  # old one intact until commit
    writer.commit()
    assert storage.read_bytes("latest") == b"new"
    assert names(storage) == ["latest"]


def test_aborted_overwrite_keeps_the_old_object(storage: Storage) -> None:
    storage.write_bytes("keep", b"old content")
    with pytest.raises(RuntimeError):
        with storage.create("keep") as writer:
            writer.write(b"new")
            raise RuntimeError("stop")
    assert storage.read_bytes("keep") == b"old content"


def test_list_by_prefix_in_name_order(storage: Storage) -> None:
    for name in ["b/2.json", "a/10.tar.zst", "a/1.tar.zst", "a/1.json", "c", "ab/x"]:
        storage.write_bytes(name, name.encode())
    assert names(storage) == ["a/1.json", "a/1.tar.zst", "a/10.tar.zst", "ab/x", "b/2.json", "c"]
    assert names(storage, "a/") == ["a/1.json", "a/1.tar.zst", "a/10.tar.zst"]
    assert names(storage, "a") == ["a/1.json", "a/1.tar.zst", "a/10.tar.zst", "ab/x"]
    assert names(storage, "a/1.") == ["a/1.json", "a/1.tar.zst"]
    assert names(storage, "zzz") == []
    assert [info.size for info in storage.list("b/")] == [len("b/2.json")]


def test_list_of_an_empty_store_is_empty(storage: Storage) -> None:
    assert names(storage) == []


def test_list_directories_names_each_first_part_once_in_name_order(storage: Storage) -> None:
    for name in ["b/2.json", "a/1.json", "a/deep/er/x", "ab/x", "c", "d/e/f"]:
        storage.write_bytes(name, name.encode())
    assert storage.list_directories() == ["a", "ab", "b", "d"]


def test_list_directories_of_an_empty_store_is_empty(storage: Storage) -> None:
    assert storage.list_directories() == []


def test_missing_objects_raise_not_found(storage: Storage) -> None:
    with pytest.raises(errors.NotFound, match="missing.json"):
        storage.stat("missing.json")
    with pytest.raises(errors.NotFound, match="missing.json"):
        storage.open("missing.json")
    with pytest.raises(errors.NotFound, match="missing.json"):
        storage.remove("missing.json")


def test_remove_deletes_the_object(storage: Storage) -> None:
    storage.write_bytes("gone.json", b"{}")
    storage.write_bytes("stays.json", b"{}")
    storage.remove("gone.json")
    assert names(storage) == ["stays.json"]
    with pytest.raises(errors.NotFound):
        storage.stat("gone.json")


def test_large_streamed_object_spans_several_parts(storage: Storage) -> None:
    """23 MiB + 5 bytes in 1 MiB writes: four full 5 MiB parts and a short last one on S3."""
    digest = hashlib.sha256()
    size = 0
    with storage.create("big.tar.zst") as writer:
        for index in range(23):
            chunk = os.urandom(CHUNK)
            digest.update(chunk)
            size += writer.write(chunk)
            if index % 7 == 0:
                assert names(storage) == []
        digest.update(b"tail!")
        size += writer.write(b"tail!")
    assert storage.stat("big.tar.zst").size == size == 23 * CHUNK + 5
    reread = hashlib.sha256()
    with storage.open("big.tar.zst") as stream:
        while chunk := stream.read(CHUNK):
            reread.update(chunk)
    assert reread.hexdigest() == digest.hexdigest()


def test_object_of_exactly_whole_parts(storage: Storage) -> None:
    data = os.urandom(2 * PART_SIZE)
    with storage.create("exact") as writer:
        writer.write(data)
    assert read_all(storage, "exact") == data


def test_one_write_larger_than_a_part(storage: Storage) -> None:
    data = os.urandom(PART_SIZE * 2 + 123)
    storage.write_bytes("one-write", data)
    assert read_all(storage, "one-write") == data


def test_check_writable_passes_on_a_usable_store(storage: Storage) -> None:
    storage.check_writable()


def test_location_names_the_store_and_object(storage: Storage) -> None:
    location = storage.location("vol/1.tar.zst")
    assert location.startswith(storage.url)
    assert location.endswith("/vol/1.tar.zst")


def test_invalid_names_are_programming_errors(storage: Storage) -> None:
    for bad in ["", "/abs", "a/../b", "a//b", "./a"]:
        with pytest.raises(ValueError):
            storage.create(bad)


def test_registry_opens_the_same_kind_of_store(storage: Storage) -> None:
    reopened = open_storage(storage.url)
    try:
        assert type(reopened) is type(storage)
        storage.write_bytes("seen.json", b"1")
        assert names(reopened) == ["seen.json"]
    finally:
        reopened.close()

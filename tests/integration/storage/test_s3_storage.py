"""S3-only behaviour of S3Storage against moto_server: checksums, streaming, bounded
concurrency, per-target settings, addressing and resumed downloads."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Iterator

import pytest

from opskit import errors
from opskit.config.targets import TargetConfig
from opskit.storage.s3 import S3Storage

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PART_SIZE = 5 * MiB


@pytest.fixture
def make_storage(s3_bucket: str, s3_env: dict[str, str]) -> Iterator:
    """Build S3Storage objects for the test bucket from target settings; close them after."""
    made: list[S3Storage] = []

    def make(prefix: str = "backups", **settings) -> S3Storage:
        storage = S3Storage.from_target(TargetConfig(url=f"s3://{s3_bucket}/{prefix}", **settings))
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()


class UploadRecorder:
    """Watches real UploadPart requests through botocore's event hooks (no mocking): the
    checksum header each part carried, and how many were on the wire at once. `delay` slows each
    part down, as a slow network would."""

    def __init__(self, client, delay: float = 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.checksums: dict[int, str] = {}
        self.in_flight = 0
        self.most_in_flight = 0
        self.started = 0
        client.meta.events.register("before-send.s3.UploadPart", self.before_send)
        client.meta.events.register("after-call.s3.UploadPart", self.after_call)

    def before_send(self, request, **_) -> None:
        part_number = int(request.url.split("partNumber=")[1].split("&")[0])
        with self.lock:
            self.checksums[part_number] = request.headers["x-amz-checksum-sha256"].decode()
            self.in_flight += 1
            self.started += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay)

    def after_call(self, **_) -> None:
        with self.lock:
            self.in_flight -= 1


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_every_part_carries_its_sha256_checksum(make_storage, s3_client, s3_bucket) -> None:
    storage = make_storage(part_size=PART_SIZE)
    recorder = UploadRecorder(storage.client)
    data = os.urandom(3 * PART_SIZE + 1000)
    with storage.create("vol/archive.tar.zst") as writer:
        for offset in range(0, len(data), MiB):
            writer.write(data[offset : offset + MiB])
    expected = {
        number + 1: sha256_b64(data[number * PART_SIZE : (number + 1) * PART_SIZE])
        for number in range(4)
    }
    assert recorder.checksums == expected
    head = s3_client.head_object(
        Bucket=s3_bucket, Key="backups/vol/archive.tar.zst", ChecksumMode="ENABLED"
    )
    assert head["ETag"].endswith('-4"')  # a multipart object of four parts
    assert head["ChecksumSHA256"]


def test_a_small_object_is_one_put_with_its_checksum(make_storage, s3_client, s3_bucket) -> None:
    storage = make_storage()
    seen: list[str] = []
    storage.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: seen.append(request.headers["x-amz-checksum-sha256"].decode()),
    )
    storage.write_bytes("vol/1.json", b'{"id": 1}')
    assert seen == [sha256_b64(b'{"id": 1}')]
    head = s3_client.head_object(Bucket=s3_bucket, Key="backups/vol/1.json")
    assert "-" not in head["ETag"]


def test_parts_are_uploaded_while_the_producer_writes(make_storage, s3_client, s3_bucket):
    storage = make_storage(part_size=PART_SIZE)
    writer = storage.create("streaming.tar.zst")
    for _ in range(3):
        writer.write(os.urandom(PART_SIZE))
    uploads = s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [upload["Key"] for upload in uploads] == ["backups/streaming.tar.zst"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        parts = s3_client.list_parts(
            Bucket=s3_bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
        ).get("Parts", [])
        if len(parts) == 3:
            break
        time.sleep(0.05)
    assert len(parts) == 3  # already on the server, before commit
    assert list(storage.list()) == []
    writer.commit()
    assert [info.name for info in storage.list()] == ["streaming.tar.zst"]


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_write_blocks_while_the_allowed_parts_are_in_flight(make_storage, concurrency) -> None:
    """With slow uploads, at most `max_concurrency` parts are on the wire and the producer waits:
    memory stays at (concurrency + 1) part buffers."""
    storage = make_storage(part_size=PART_SIZE, max_concurrency=concurrency)
    recorder = UploadRecorder(storage.client, delay=0.4)
    chunk = os.urandom(PART_SIZE)
    started = time.monotonic()
    with storage.create("slow.tar.zst") as writer:
        for _ in range(6):
            writer.write(chunk)
    elapsed = time.monotonic() - started
    assert recorder.most_in_flight == concurrency
    # Six parts of 0.4 s each, `concurrency` at a time, cannot finish faster than this.
    assert elapsed >= 0.4 * (6 // concurrency) - 0.05
    assert storage.stat("slow.tar.zst").size == 6 * PART_SIZE


def test_default_concurrency_is_two_at_the_first_part_size(make_storage) -> None:
    storage = make_storage()
    recorder = UploadRecorder(storage.client, delay=0.3)
    chunk = os.urandom(8 * MiB)
    with storage.create("default.tar.zst") as writer:
        for _ in range(5):
            writer.write(chunk)
    assert recorder.most_in_flight == 2
    assert recorder.started == 8  # 40 MiB in 5 MiB parts


def test_storage_class_and_sse_reach_archives(make_storage, s3_client, s3_bucket) -> None:
    storage = make_storage(
        storage_class="STANDARD_IA", sse="aws:kms", sse_kms_key_id="alias/opskit-backups"
    )
    with storage.create("vol/big.tar.zst") as writer:  # multipart
        writer.write(os.urandom(9 * MiB))
    storage.write_bytes("vol/small.tar.zst", b"tiny archive")  # one PUT
    storage.write_bytes("vol/big.json", b"{}")  # metadata
    for name, storage_class in [
        ("vol/big.tar.zst", "STANDARD_IA"),
        ("vol/small.tar.zst", "STANDARD_IA"),
        ("vol/big.json", None),  # metadata stays STANDARD (no StorageClass header)
    ]:
        head = s3_client.head_object(Bucket=s3_bucket, Key=f"backups/{name}")
        assert head.get("StorageClass") == storage_class, name
        assert head["ServerSideEncryption"] == "aws:kms", name
        assert head["SSEKMSKeyId"].endswith("alias/opskit-backups"), name


def test_sse_s3_and_glacier_ir(make_storage, s3_client, s3_bucket) -> None:
    storage = make_storage(storage_class="GLACIER_IR", sse="AES256")
    storage.write_bytes("a.tar.zst", b"x")
    head = s3_client.head_object(Bucket=s3_bucket, Key="backups/a.tar.zst")
    assert head["StorageClass"] == "GLACIER_IR"
    assert head["ServerSideEncryption"] == "AES256"
    assert storage.read_bytes("a.tar.zst") == b"x"  # GLACIER_IR reads at once


def test_path_addressing_style(make_storage) -> None:
    storage = make_storage(addressing_style="path")
    assert storage.client.meta.config.s3 == {"addressing_style": "path"}
    storage.write_bytes("p.json", b"{}")
    assert storage.read_bytes("p.json") == b"{}"


def test_bucket_root_without_prefix(s3_bucket, s3_env) -> None:
    storage = S3Storage.from_target(TargetConfig(url=f"s3://{s3_bucket}"))
    storage.write_bytes("top.json", b"1")
    assert [info.name for info in storage.list()] == ["top.json"]
    assert storage.location("top.json") == f"s3://{s3_bucket}/top.json"


def test_list_skips_foreign_keys_that_are_no_valid_names(
    make_storage, s3_client, s3_bucket
) -> None:
    storage = make_storage()
    s3_client.put_object(Bucket=s3_bucket, Key="backups/folder/", Body=b"")  # console "folder"
    s3_client.put_object(Bucket=s3_bucket, Key="backups/a//b", Body=b"")
    s3_client.put_object(Bucket=s3_bucket, Key="elsewhere/c", Body=b"")
    storage.write_bytes("folder/real.json", b"{}")
    assert [info.name for info in storage.list()] == ["folder/real.json"]


def test_list_pages_through_more_than_a_thousand_keys(make_storage, s3_client, s3_bucket):
    storage = make_storage()
    for number in range(1005):
        s3_client.put_object(Bucket=s3_bucket, Key=f"backups/k/{number:05d}", Body=b"")
    listed = [info.name for info in storage.list("k/")]
    assert listed == [f"k/{number:05d}" for number in range(1005)]


def test_upload_aborted_elsewhere_fails_with_one_line(
    make_storage, s3_client, s3_bucket, monkeypatch
):
    """A worker's failure (here: the upload vanished) surfaces in the producer as one line.

    moto answers a part of an aborted upload with a 500 (S3: 404 NoSuchUpload), which is
    retried; the user's AWS_MAX_ATTEMPTS (respected by opskit) keeps this test short.
    """
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    storage = make_storage(part_size=PART_SIZE)
    with pytest.raises(errors.StorageError) as raised:
        with storage.create("vanishing.tar.zst") as writer:
            writer.write(os.urandom(PART_SIZE))
            for upload in s3_client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]:
                s3_client.abort_multipart_upload(
                    Bucket=s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            for _ in range(4):
                writer.write(os.urandom(PART_SIZE))
    message = str(raised.value)
    assert "\n" not in message
    assert f"s3://{s3_bucket}/backups/vanishing.tar.zst" in message
    assert list(storage.list()) == []


def test_download_resumes_after_a_broken_connection(make_storage) -> None:
    storage = make_storage()
    data = os.urandom(6 * MiB)
    storage.write_bytes("resume.bin", data)
    stream = storage.open("resume.bin")
    first = stream.read(MiB)
    # Break the HTTP connection under the stream, as a network reset would.
    stream._body._raw_stream._fp.fp.raw._sock.shutdown(2)  # type: ignore[attr-defined]
    rest = b""
    while chunk := stream.read(MiB):
        rest += chunk
    stream.close()
    assert first + rest == data


def test_open_of_a_missing_object_names_the_key(make_storage, s3_bucket) -> None:
    storage = make_storage()
    with pytest.raises(errors.NotFound, match=f"no object s3://{s3_bucket}/backups/x/1.tar.zst"):
        storage.open("x/1.tar.zst")


def test_write_after_commit_is_a_programming_error(make_storage) -> None:
    storage = make_storage()
    writer = storage.create("done.json")
    writer.write(b"1")
    writer.commit()
    with pytest.raises(ValueError):
        writer.write(b"2")


def test_list_directories_passes_over_staging_markers_and_keys_beside_the_prefix(
    make_storage, s3_client, s3_bucket
) -> None:
    storage = make_storage("fleet")
    for key in (
        "fleet/host-a/app.json",
        "fleet/host-b/index/records.json",
        "fleet/.opskit-staging/dead+1+2/part-1",  # the store's own staging objects
        "fleet/marker-only/",  # a "directory" marker some tools write: S3 names it too
        "fleet/top.json",
        "fleetwood/host-x/app.json",  # another prefix that only starts the same
    ):
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"1")

    assert storage.list_directories() == ["host-a", "host-b", "marker-only"]

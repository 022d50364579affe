"""Assembled parts against moto_server: a part larger than a piece goes up as a staging object
that S3 copies into the part, so memory stays at a few pieces whatever the archive's size.

The default plan assembles from part 2001 (archives above 9.8 GiB); these tests use a plan that
assembles from part 3, with parts of three pieces, so that the same code runs on megabytes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from opskit import errors
from opskit.config.targets import TargetConfig
from opskit.process_owner import owner_label
from opskit.storage.s3 import S3Storage
from opskit.storage.s3.plan import MAX_PARTS, PartPlan

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PIECE = 5 * MiB
# Parts 1-2 are single pieces; parts 3 and on are 15 MiB, assembled from three pieces.
SMALL_PLAN = PartPlan(PIECE, ((2, PIECE), (MAX_PARTS - 2, 3 * PIECE)))
STAGING = ".opskit-staging/"


class RequestRecorder:
    """Counts real requests by operation through botocore's event hooks (no mocking), and the
    largest body any UploadPart carried."""

    def __init__(self, client) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.largest_body = 0
        client.meta.events.register("before-send.s3.*", self.before_send)

    def before_send(self, request, event_name: str, **_) -> None:
        operation = event_name.rsplit(".", 1)[1]
        with self.lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            if operation == "UploadPart":
                self.largest_body = max(self.largest_body, int(request.headers["Content-Length"]))


@pytest.fixture
def storage(s3_bucket: str, s3_env: dict[str, str]) -> Iterator[S3Storage]:
    store = S3Storage.from_target(TargetConfig(url=f"s3://{s3_bucket}/backups"))
    store.plan = SMALL_PLAN
    yield store
    store.close()


def write_all(writer, data: bytes) -> None:
    for offset in range(0, len(data), MiB):
        writer.write(data[offset : offset + MiB])


def all_keys(s3_client, bucket: str) -> list[str]:
    return [entry["Key"] for entry in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def open_uploads(s3_client, bucket: str) -> list[str]:
    return [
        upload["Key"]
        for upload in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]


def part_count(s3_client, bucket: str, key: str) -> int:
    etag = s3_client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    return int(etag.rpartition("-")[2])


def test_large_parts_are_assembled_by_server_side_copy(storage, s3_client, s3_bucket) -> None:
    recorder = RequestRecorder(storage.client)
    data = os.urandom(2 * PIECE + 2 * 3 * PIECE + 7 * MiB)  # 2 direct, 2 full assembled, 1 short
    with storage.create("vol/archive.tar.zst") as writer:
        write_all(writer, data)

    with storage.open("vol/archive.tar.zst") as stream:
        assert hashlib.sha256(stream.read()).digest() == hashlib.sha256(data).digest()
    assert part_count(s3_client, s3_bucket, "backups/vol/archive.tar.zst") == 5
    # The two full assembled parts and the short last one (7 MiB: two pieces) were copied.
    assert recorder.calls["UploadPartCopy"] == 3
    assert recorder.calls["DeleteObject"] == 3
    # No request ever carried more than a piece: memory does not grow with the part size.
    assert recorder.largest_body == PIECE
    assert all_keys(s3_client, s3_bucket) == ["backups/vol/archive.tar.zst"]
    assert open_uploads(s3_client, s3_bucket) == []
    assert [info.name for info in storage.list()] == ["vol/archive.tar.zst"]


def test_a_short_tail_after_the_direct_parts_needs_no_copy(storage, s3_client, s3_bucket):
    recorder = RequestRecorder(storage.client)
    data = os.urandom(2 * PIECE + MiB)
    with storage.create("vol/tail.tar.zst") as writer:
        write_all(writer, data)

    assert (
        s3_client.get_object(Bucket=s3_bucket, Key="backups/vol/tail.tar.zst")["Body"].read()
        == data
    )
    assert part_count(s3_client, s3_bucket, "backups/vol/tail.tar.zst") == 3
    assert "UploadPartCopy" not in recorder.calls
    assert all_keys(s3_client, s3_bucket) == ["backups/vol/tail.tar.zst"]


def test_abort_in_the_middle_of_an_assembled_part_leaves_nothing(storage, s3_client, s3_bucket):
    writer = storage.create("vol/aborted.tar.zst")
    # Two direct parts, one assembled part (copied, or being copied), and half of the next.
    write_all(writer, os.urandom(2 * PIECE + 3 * PIECE + 2 * PIECE))
    writer.abort()

    assert all_keys(s3_client, s3_bucket) == []
    assert open_uploads(s3_client, s3_bucket) == []


def test_a_failed_copy_aborts_everything_with_a_one_line_error(storage, s3_client, s3_bucket):
    def refuse_copy(**_) -> None:
        raise ConnectionResetError("connection reset by the test")

    storage.client.meta.events.register("before-send.s3.UploadPartCopy", refuse_copy)
    writer = storage.create("vol/failed.tar.zst")
    with pytest.raises(errors.StorageError) as raised:
        write_all(writer, os.urandom(2 * PIECE + 2 * 3 * PIECE))
        writer.commit()
    writer.abort()

    message = str(raised.value)
    assert "\n" not in message
    assert f"s3://{s3_bucket}/backups/vol/failed.tar.zst" in message
    assert all_keys(s3_client, s3_bucket) == []
    assert open_uploads(s3_client, s3_bucket) == []


def dead_owner() -> str:
    """The owner token of a process of this host that has exited."""
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    host = owner_label().split(":")[0]
    return f"{host}+{child.pid}+1"


def put_staging(s3_client, bucket: str, owner: str, age_seconds: float) -> list[str]:
    """Leave a staging object and a staging upload as a writer killed `age_seconds` after its
    start would; return their keys."""
    created = int(time.time() - age_seconds)
    directory = f"backups/{STAGING}{owner}+{created}-{os.urandom(4).hex()}/vol/old.tar.zst"
    s3_client.put_object(Bucket=bucket, Key=f"{directory}.part02001", Body=b"stale")
    s3_client.create_multipart_upload(Bucket=bucket, Key=f"{directory}.part02002")
    return [f"{directory}.part02001", f"{directory}.part02002"]


def staging_left(s3_client, bucket: str) -> list[str]:
    keys = all_keys(s3_client, bucket) + open_uploads(s3_client, bucket)
    return sorted(key for key in keys if STAGING in key)


HOUR = 3600


def test_staging_of_killed_writers_is_removed_by_the_next_backup(storage, s3_client, s3_bucket):
    gone = [
        *put_staging(s3_client, s3_bucket, dead_owner(), age_seconds=2 * HOUR),
        *put_staging(s3_client, s3_bucket, "otherhost+1+1", age_seconds=3 * 24 * HOUR),
    ]
    kept = [
        # A dead process of this host, but recent: its pid may be another container's.
        *put_staging(s3_client, s3_bucket, dead_owner(), age_seconds=60),
        # Another host's: it may belong to a running backup.
        *put_staging(s3_client, s3_bucket, "otherhost+1+1", age_seconds=2 * HOUR),
        # This very process's.
        *put_staging(s3_client, s3_bucket, owner_label().replace(":", "+"), age_seconds=3 * HOUR),
    ]
    assert [info.name for info in storage.list()] == []  # never listed as backups
    assert staging_left(s3_client, s3_bucket) == sorted(gone + kept)

    with storage.create("vol/new.tar.zst") as writer:
        writer.write(b"new")

    assert staging_left(s3_client, s3_bucket) == sorted(kept)
    assert "backups/vol/new.tar.zst" in all_keys(s3_client, s3_bucket)


def test_an_interrupt_while_abort_waits_for_uploads_leaves_nothing_billed(
    storage, s3_client, s3_bucket
) -> None:
    """A second Ctrl-C (or a SIGKILL) during abort's wait for parts on the wire: the uploads
    were aborted before that wait."""

    on_the_wire = threading.Semaphore(0)

    def slow_part(**_) -> None:
        on_the_wire.release()
        time.sleep(3.0)

    storage.client.meta.events.register("before-send.s3.UploadPart", slow_part)
    writer = storage.create("vol/twice.tar.zst")
    write_all(writer, os.urandom(2 * PIECE))  # parts 1 and 2: both in flight
    for _ in range(2):
        assert on_the_wire.acquire(timeout=30), "the parts never reached the wire"

    def second_interrupt(*_) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, second_interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            writer.abort()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert open_uploads(s3_client, s3_bucket) == []
    assert all_keys(s3_client, s3_bucket) == []


def test_in_a_versioned_bucket_staging_versions_are_deleted_too(storage, s3_client, s3_bucket):
    """A plain DeleteObject would only add a delete marker and leave the bytes billed."""
    s3_client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    data = os.urandom(2 * PIECE + 3 * PIECE + MiB)
    with storage.create("vol/versioned.tar.zst") as writer:
        write_all(writer, data)

    versions = s3_client.list_object_versions(Bucket=s3_bucket)
    kept = [entry["Key"] for entry in versions.get("Versions", [])]
    assert kept == ["backups/vol/versioned.tar.zst"]
    assert versions.get("DeleteMarkers", []) == []
    with storage.open("vol/versioned.tar.zst") as stream:
        assert stream.read() == data

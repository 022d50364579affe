"""Interrupted uploads leave nothing behind: no object, and `list_multipart_uploads` empty.

In-process: an exception mid-write, `abort()`, and an abort while parts are still on the wire.
Out of process: a writer killed with SIGTERM or SIGINT mid-upload, with the CLI's handlers (they
raise `opskit.errors.Interrupted`), both while it produces and while it waits for a free slot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from opskit.config.targets import TargetConfig
from opskit.storage.s3 import S3Storage

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PART_SIZE = 5 * MiB


def uploads(client, bucket: str) -> list[dict]:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def objects(client, bucket: str) -> list[str]:
    return [entry["Key"] for entry in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def storage(s3_bucket: str, s3_env: dict[str, str]):
    store = S3Storage.from_target(TargetConfig(url=f"s3://{s3_bucket}/pre", part_size=PART_SIZE))
    yield store
    store.close()


def test_exception_mid_write_aborts_the_multipart_upload(storage, s3_client, s3_bucket) -> None:
    with pytest.raises(ZeroDivisionError):
        with storage.create("vol/backup.tar.zst") as writer:
            for _ in range(3):
                writer.write(os.urandom(PART_SIZE))
            assert len(uploads(s3_client, s3_bucket)) == 1
            1 / 0  # noqa: B018 - the producer fails mid-stream
    assert uploads(s3_client, s3_bucket) == []
    assert objects(s3_client, s3_bucket) == []


def test_base_exception_mid_write_aborts_too(storage, s3_client, s3_bucket) -> None:
    """Interrupted is a BaseException: the writer's context manager still aborts."""
    from opskit import errors

    with pytest.raises(errors.Interrupted):
        with storage.create("vol/backup.tar.zst") as writer:
            writer.write(os.urandom(2 * PART_SIZE))
            raise errors.Interrupted("SIGTERM")
    assert uploads(s3_client, s3_bucket) == []
    assert objects(s3_client, s3_bucket) == []


def test_abort_waits_for_parts_on_the_wire(storage, s3_client, s3_bucket) -> None:
    """A part still uploading when abort() runs cannot be left behind as a billed part."""
    sending, release = threading.Event(), threading.Event()

    def slow_send(**_) -> None:
        sending.set()
        release.wait(timeout=10)

    storage.client.meta.events.register("before-send.s3.UploadPart", slow_send)
    writer = storage.create("slow.tar.zst")
    writer.write(os.urandom(2 * PART_SIZE))
    assert sending.wait(timeout=10)  # a part is on the wire
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    writer.abort()
    assert 0.5 < time.monotonic() - started < 10
    assert uploads(s3_client, s3_bucket) == []
    assert objects(s3_client, s3_bucket) == []


def test_interrupt_while_the_upload_is_created_leaves_no_upload(
    storage, s3_client, s3_bucket
) -> None:
    """S3 created the upload but the interrupt came before its id did: abort finds it."""
    from opskit import errors

    def interrupted(**_) -> None:
        raise errors.Interrupted("SIGINT")

    storage.client.meta.events.register("after-call.s3.CreateMultipartUpload", interrupted)
    with pytest.raises(errors.Interrupted):
        with storage.create("vol/backup.tar.zst") as writer:
            writer.write(os.urandom(PART_SIZE + 1))
    assert uploads(s3_client, s3_bucket) == []
    assert objects(s3_client, s3_bucket) == []


def test_abort_before_any_part_has_nothing_to_abort(storage, s3_client, s3_bucket) -> None:
    writer = storage.create("tiny.json")
    writer.write(b"{}")
    writer.abort()
    assert uploads(s3_client, s3_bucket) == []
    assert objects(s3_client, s3_bucket) == []


WRITER_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time

    from opskit import errors
    from opskit.config.targets import TargetConfig
    from opskit.log import configure_logging
    from opskit.storage.s3 import S3Storage

    configure_logging(1)  # logs on stderr, as in the CLI with -v

    def interrupted(signum, frame):  # what the CLI does (opskit.cli.main)
        raise errors.Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    url, phase = sys.argv[1], sys.argv[2]
    storage = S3Storage.from_target(
        TargetConfig(url=url, part_size=5 * 1024 * 1024, max_concurrency=1)
    )
    if phase == "blocked":  # slow parts: the producer ends up waiting for a free slot
        storage.client.meta.events.register(
            "before-send.s3.UploadPart", lambda **_: time.sleep(1.0)
        )
    chunk = os.urandom(1024 * 1024)
    try:
        with storage.create("vol/backup.tar.zst") as writer:
            for _ in range(12):  # two full parts handed to the uploader
                writer.write(chunk)
            print("uploading", flush=True)
            while True:
                writer.write(chunk)
                if phase == "producing":
                    time.sleep(0.05)
    except errors.Interrupted as interrupt:
        print(f"interrupted by {interrupt.signal_name}", flush=True)
        sys.exit(130)
    """
)


@pytest.mark.parametrize("phase", ["producing", "blocked"])
@pytest.mark.parametrize(
    "signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
def test_signal_mid_upload_aborts_the_multipart_upload(
    tmp_path: Path, s3_env, s3_client, s3_bucket, signal_number, phase
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), f"s3://{s3_bucket}/pre", phase],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**s3_env, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "uploading"
        deadline = time.monotonic() + 15
        while not uploads(s3_client, s3_bucket) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(uploads(s3_client, s3_bucket)) == 1  # an upload is in progress
        time.sleep(0.5)
        process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    name = signal.Signals(signal_number).name
    assert process.returncode == 130, stderr
    assert f"interrupted by {name}" in stdout
    assert uploads(s3_client, s3_bucket) == []
    assert objects(s3_client, s3_bucket) == []

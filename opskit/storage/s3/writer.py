"""Streaming one object to S3 as a multipart upload, in fixed memory whatever its size.

`write()` fills a piece buffer (5 MiB); a full piece is handed to a worker thread and uploaded
while the producer goes on, and `write()` blocks while the allowed number of pieces is in
flight, so memory stays at (concurrency + 1) pieces. Where the plan makes a part larger than a
piece, the part's pieces go up as a staging object that the assembler thread then has S3 copy
into the part and deletes. The object appears only on `commit()`; an exception, `abort()` or an
interrupt aborts every upload and deletes the staging objects, so no billed bytes remain.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from opskit import errors
from opskit.log import get_logger
from opskit.process_owner import owner_in_name, owner_token
from opskit.storage.base import ObjectWriter
from opskit.storage.s3.buffers import PartBody, PartBuffer, sha256_base64
from opskit.storage.s3.failures import Where, classify_error
from opskit.storage.s3.multipart import MultipartUpload
from opskit.storage.s3.plan import MAX_PARTS, MiB, PartPlan, concurrency_for

if TYPE_CHECKING:
    from opskit.storage.s3.store import S3Storage

log = get_logger(__name__)

# Staging objects live here, below the target's prefix, in a directory named after their owner
# and creation time, so that a later run can remove those of a writer that was killed.
STAGING_DIRECTORY = ".opskit-staging"
# On abort, wait this long for pieces and copies already on the wire before aborting.
ABORT_WAIT_SECONDS = 30.0
# Requests that abort() stops at once (the threads send them; the producer discards).
ABORTABLE_OPERATIONS = ("UploadPart", "UploadPartCopy", "CompleteMultipartUpload")
# Staging objects closed but not yet copied, at most: with the one being filled, the bucket
# holds at most two staging objects of this writer at a time.
MAX_PENDING_ASSEMBLIES = 1


class UploadAborted(Exception):
    """Raised in place of a request of an aborted upload (never retried, never reported)."""


def staging_directory_name(created: float | None = None) -> str:
    """`host+pid+start-ticks+unixtime-random`: who made it, and when (by our own clock: stores
    differ in the dates they report for uploads)."""
    created = time.time() if created is None else created
    return f"{owner_token()}+{int(created)}-{secrets.token_hex(4)}"


def parse_staging_directory_name(name: str) -> tuple[str, float] | None:
    """Given a staging directory's name, return (owner label, creation time), or None if the
    name is not one of ours."""
    owner = owner_in_name(name)
    created, _, _ = name.rsplit("+", 1)[-1].partition("-")
    if not owner or not created.isdigit():
        return None
    return owner, float(created)


@dataclass
class _Assembly:
    """A part of the object built from pieces: a staging upload, copied into the part."""

    part_number: int
    size: int
    staging: MultipartUpload
    pieces: int = 0
    filled: int = 0


class S3ObjectWriter(ObjectWriter):
    def __init__(self, storage: S3Storage, name: str, plan: PartPlan) -> None:
        self._storage = storage
        self._name = name
        self._plan = plan
        self._key = storage.key(name)
        self._upload = self._new_upload(self._key, storage.put_arguments(name))
        self._where = self._upload.where
        self._concurrency = concurrency_for(plan.piece_size, storage.max_concurrency)
        self._staging_root = f"{storage.key(STAGING_DIRECTORY)}/{staging_directory_name()}/{name}"
        self._buffer: PartBuffer | None = None
        self._parts_closed = 0  # parts of the object whose bytes were all handed on
        self._assembly: _Assembly | None = None
        self._staging: list[MultipartUpload] = []
        self._condition = threading.Condition()
        self._in_flight = 0
        self._assemblies_pending = 0
        self._failure: BaseException | None = None
        self._aborting = threading.Event()
        self._work: queue.SimpleQueue[tuple[MultipartUpload, int, PartBuffer] | None] = (
            queue.SimpleQueue()
        )
        self._assemblies: queue.SimpleQueue[_Assembly | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._assembler: threading.Thread | None = None
        self._state = "open"
        self.size = 0
        # botocore retries a failing request for up to a minute; after abort() that is waste.
        for operation in ABORTABLE_OPERATIONS:
            storage.client.meta.events.register(
                f"before-send.s3.{operation}",
                self._refuse_after_abort,
                unique_id=f"opskit-abort-{id(self)}-{operation}",
            )

    def _new_upload(self, key: str, put_arguments: dict[str, str]) -> MultipartUpload:
        storage = self._storage
        where = Where(storage.bucket, storage.endpoint, key, "uploading")
        return MultipartUpload(storage.client, storage.bucket, key, where, put_arguments)

    # -- the producer side -------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> int:
        if self._state != "open":
            raise ValueError(f"write to {self._where.target} after commit or abort")
        self._raise_failure()
        view = memoryview(data).cast("B")
        written = len(view)
        while view:
            if self._buffer is None:
                self._buffer = PartBuffer(self._next_piece_size())
            view = view[self._buffer.append(view) :]
            if self._buffer.full:
                self._submit_piece(last=False)
        self.size += written
        return written

    def _next_piece_size(self) -> int:
        part_number = self._parts_closed + 1
        if part_number > MAX_PARTS:
            limit = f"{self._plan.max_object_size() // MiB} MiB"
            if self._storage.part_size is None:
                raise errors.StorageError(
                    f"{self._where.target} is larger than the {limit} one S3 object can hold "
                    f"in {MAX_PARTS} parts",
                    "back up less data at once (a bind path per subdirectory)",
                )
            raise errors.StorageError(
                f"{self._where.target} is larger than the {limit} a multipart upload can hold "
                "with this part_size",
                "raise the target's part_size (or leave it unset to let parts grow)",
            )
        filled = self._assembly.filled if self._assembly is not None else 0
        return min(self._plan.piece_size, self._plan.part_size(part_number) - filled)

    def _submit_piece(self, *, last: bool) -> None:
        """Send the filled buffer where it belongs: directly as a part of the object, or as
        the next piece of an assembled part."""
        buffer = self._buffer
        assert buffer is not None
        if not self._upload.created:
            self._upload.create()
        part_number = self._parts_closed + 1
        assembled = self._plan.is_assembled(part_number)
        if not assembled or (last and self._assembly is None):  # a short last part goes direct
            self._hand_to_worker(self._upload, part_number, buffer)
            self._parts_closed = part_number
            return
        if self._assembly is None:
            self._assembly = self._open_assembly(part_number)
        assembly = self._assembly
        assembly.pieces += 1
        assembly.filled += buffer.filled
        self._hand_to_worker(assembly.staging, assembly.pieces, buffer)
        if assembly.filled == assembly.size:
            self._close_assembly()

    def _open_assembly(self, part_number: int) -> _Assembly:
        key = f"{self._staging_root}.part{part_number:05d}"
        # Staging objects are STANDARD: IA and Glacier classes bill a minimum storage duration.
        arguments = self._storage.put_arguments(self._name)
        arguments.pop("StorageClass", None)
        staging = self._new_upload(key, arguments)
        with self._condition:
            self._staging.append(staging)
        staging.create()
        return _Assembly(part_number, self._plan.part_size(part_number), staging)

    def _close_assembly(self) -> None:
        """Queue the open assembly for copying; block while an earlier one is still copying."""
        assembly = self._assembly
        assert assembly is not None
        with self._condition:
            while self._assemblies_pending >= MAX_PENDING_ASSEMBLIES and self._failure is None:
                self._condition.wait(timeout=1.0)
            self._raise_failure()
            self._assemblies_pending += 1
        if self._assembler is None:
            self._assembler = self._start_thread(self._assemble_loop, "opskit-s3-assembler")
        self._assembly = None
        self._parts_closed = assembly.part_number
        self._assemblies.put(assembly)

    def _hand_to_worker(self, upload: MultipartUpload, part_number: int, buffer: PartBuffer):
        """Queue one piece; block while the allowed pieces are in flight."""
        limit = self._concurrency
        while len(self._threads) < limit:
            self._threads.append(
                self._start_thread(self._work_loop, f"opskit-s3-part-{len(self._threads)}")
            )
        with self._condition:
            while self._in_flight >= limit and self._failure is None:
                self._condition.wait(timeout=1.0)
            self._raise_failure()
            self._in_flight += 1
        self._buffer = None
        self._work.put((upload, part_number, buffer))

    @staticmethod
    def _start_thread(target: Callable[[], None], name: str) -> threading.Thread:
        # Daemon: never keep the process alive on exit; abort() waits for them.
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is not None:
            error = classify_error(failure, self._where)
            raise error from (None if error is failure else failure)

    def _fail(self, exc: BaseException) -> None:
        exc.__traceback__ = None  # it would keep a piece's bytes alive
        with self._condition:
            if self._failure is None:
                self._failure = exc
            self._condition.notify_all()

    # -- the threads -------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            upload, part_number, buffer = item
            try:
                if not self._aborting.is_set():
                    upload.upload_part(part_number, buffer.view())
            except BaseException as exc:  # noqa: BLE001 - handed to the producer thread
                log.debug("part upload failed", key=upload.key, part=part_number, error=repr(exc))
                self._fail(exc)
            finally:
                buffer.release()
                del buffer, item
                with self._condition:
                    self._in_flight -= 1
                    self._condition.notify_all()

    def _assemble_loop(self) -> None:
        while True:
            assembly = self._assemblies.get()
            if assembly is None:
                return
            try:
                self._assemble(assembly)
            except BaseException as exc:  # noqa: BLE001 - handed to the producer thread
                log.debug("part copy failed", part=assembly.part_number, error=repr(exc))
                self._fail(exc)
            finally:
                with self._condition:
                    self._assemblies_pending -= 1
                    self._condition.notify_all()

    def _assemble(self, assembly: _Assembly) -> None:
        """Wait for the assembly's pieces, complete its staging object, have S3 copy it into
        the object's part, and delete it."""
        staging = assembly.staging
        with self._condition:
            while staging.parts_done < assembly.pieces:
                if self._failure is not None or self._aborting.is_set():
                    return
                self._condition.wait(timeout=1.0)
        for step in (
            lambda: staging.complete(assembly.pieces),
            lambda: self._upload.copy_part(assembly.part_number, staging),
            staging.delete_object,
        ):
            if self._aborting.is_set():
                staging.discard()
                return
            step()
        with self._condition:
            self._staging.remove(staging)
        log.debug("part assembled", key=self._key, part=assembly.part_number, size=assembly.size)

    # -- commit and abort --------------------------------------------------------------------

    def commit(self) -> None:
        if self._state != "open":
            raise ValueError(f"commit of {self._where.target} after commit or abort")
        try:
            if not self._upload.created:
                self._put_whole()
            else:
                if self._buffer is not None and self._buffer.filled:
                    self._submit_piece(last=True)
                if self._assembly is not None:
                    self._close_assembly()
                self._wait_until_idle()
                self._upload.complete(self._parts_closed)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, Exception):
                raise classify_error(exc, self._where) from exc
            raise
        self._state = "committed"
        self._stop_threads(wait=None)  # idle by now: they exit at once
        self._unregister_hooks()
        log.debug("upload committed", key=self._key, size=self.size, parts=self._parts_closed)

    def _put_whole(self) -> None:
        """An object smaller than one piece goes up in a single PutObject."""
        buffer = self._buffer or PartBuffer(0)
        view = buffer.view()
        checksum = sha256_base64(view)
        self._storage.client.put_object(
            Bucket=self._storage.bucket,
            Key=self._key,
            Body=PartBody(view),
            ContentLength=len(view),
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
            **self._storage.put_arguments(self._name),
        )
        del view
        buffer.release()
        self._buffer = None

    def _wait_until_idle(self) -> None:
        with self._condition:
            while (self._in_flight or self._assemblies_pending) and self._failure is None:
                self._condition.wait(timeout=1.0)
        self._raise_failure()

    def abort(self) -> None:
        """Discard everything: stop the threads, abort the uploads, delete staging objects.
        Never raises for S3 failures (it logs a warning), so the original error stays the one
        reported."""
        if self._state in ("aborted", "committed"):
            return
        self._aborting.set()
        if self._buffer is not None:
            self._buffer.release()
            self._buffer = None
        try:
            # Uploads first: a second Ctrl-C (or a SIGKILL) while waiting for the threads must
            # not leave them billed. A part that lands later aborts its upload again.
            self._discard_uploads()
            self._stop_threads(wait=ABORT_WAIT_SECONDS)
        finally:
            self._discard_uploads()  # what the threads finished meanwhile
            self._state = "aborted"
            self._unregister_hooks()

    def _refuse_after_abort(self, request: Any, **_: Any) -> None:
        """Stop a request (or its retry) of this writer's uploads once it is aborting."""
        if not self._aborting.is_set():
            return
        upload_ids = parse_qs(urlsplit(request.url).query).get("uploadId", [])
        if {upload.upload_id for upload in self._uploads()}.intersection(upload_ids):
            raise UploadAborted(f"{self._where.target}: the upload was aborted")

    def _unregister_hooks(self) -> None:
        for operation in ABORTABLE_OPERATIONS:
            self._storage.client.meta.events.unregister(
                f"before-send.s3.{operation}", unique_id=f"opskit-abort-{id(self)}-{operation}"
            )

    def _uploads(self) -> list[MultipartUpload]:
        """The object's upload and the staging uploads not yet assembled (threads change them)."""
        with self._condition:
            return [self._upload, *self._staging]

    def _discard_uploads(self) -> None:
        for upload in self._uploads():
            upload.discard()

    def _stop_threads(self, wait: float | None) -> None:
        """Ask the threads to exit after their current step; wait up to `wait` seconds (None:
        don't wait)."""
        threads = list(self._threads)
        for _ in self._threads:
            self._work.put(None)
        if self._assembler is not None:
            self._assemblies.put(None)
            threads.append(self._assembler)
        self._threads, self._assembler = [], None
        if wait is None:
            return
        with self._condition:
            self._condition.notify_all()
        deadline = time.monotonic() + wait
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            log.warning(
                "uploads still running after abort; they are aborted when they finish",
                key=self._key,
            )

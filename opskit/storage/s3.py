"""The S3 (and S3-compatible) backup store: the only module that imports boto3 and botocore.

Objects live under `s3://bucket/prefix/`. Writes are streaming multipart uploads: parts go up
from a small pool of threads while the producer keeps writing, each with a SHA-256 checksum;
the object appears only on `commit()` (CompleteMultipartUpload), and an exception, `abort()` or
an interrupt aborts the upload so no billed parts remain. Every boto3/botocore failure is
translated here into a one-line `opskit.errors` message naming the bucket or key.
"""

from __future__ import annotations

import base64
import hashlib
import io
import mmap
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, cast
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions
import botocore.session
import structlog

from opskit import __version__, errors
from opskit.config.targets import TargetConfig
from opskit.storage.base import ObjectInfo, ObjectWriter, Storage, check_name

log = structlog.get_logger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB

# S3's multipart limits.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000

# Two parts of 5 MiB in flight by default: with opskit's own ~120 MiB (Python, the Docker
# client, boto3 and its S3 model, the zstd pipeline) that keeps a backup under 150 MB of RSS
# (measured: 8 MiB parts took it to 152 MB). Each extra part in flight costs one part buffer;
# a target's max_concurrency raises it (throughput on high-latency links, for memory).
DEFAULT_MAX_CONCURRENCY = 2
# Without an explicit max_concurrency, fewer parts are uploaded at once as parts grow, so that
# the part buffers (parts in flight plus the one being filled) stay within this budget.
BUFFER_BUDGET = 24 * MiB

# The automatic part-size schedule: (number of parts, part size). A stream's total size is
# unknown up front, so the size grows with the part number; 10,000 parts hold 5.06 TiB.
PART_SCHEDULE: tuple[tuple[int, int], ...] = (
    (2000, 5 * MiB),  # parts     1-2000: archives up to 9.8 GiB
    (1000, 10 * MiB),  # parts  2001-3000: up to 19.5 GiB
    (1000, 20 * MiB),  # parts  3001-4000: up to 39.1 GiB
    (1000, 40 * MiB),  # parts  4001-5000: up to 78.1 GiB
    (300, 80 * MiB),  # parts   5001-5300: up to 101.6 GiB
    (300, 160 * MiB),  # parts  5301-5600: up to 148.4 GiB
    (300, 320 * MiB),  # parts  5601-5900: up to 242.2 GiB
    (300, 640 * MiB),  # parts  5901-6200: up to 429.7 GiB
    (3800, 1280 * MiB),  # parts 6201-10000: up to 5.06 TiB
)
DEFAULT_PART_SIZE = PART_SCHEDULE[0][1]

# Retries for throttling, 5xx and connection resets: botocore's "standard" mode (exponential
# backoff with jitter, a retry quota) with 10 attempts in all instead of its default 3. The
# user's AWS_RETRY_MODE / AWS_MAX_ATTEMPTS (or ~/.aws/config) win.
RETRY_MODE = "standard"
MAX_ATTEMPTS = 10
# check_writable() should answer fast: its client gives up after this many attempts.
PROBE_ATTEMPTS = 3
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
# A download interrupted mid-stream is resumed from where it stopped (a ranged GET), this often.
MAX_READ_RESUMES = 5
# On abort, wait this long for parts already on the wire before aborting the upload.
ABORT_WAIT_SECONDS = 30.0

# Objects with this suffix are metadata: they keep the STANDARD storage class, so that `list`
# can always read them at once (a GLACIER metadata file could not be read without a restore).
METADATA_SUFFIX = ".json"

CREDENTIAL_CODES = {
    "InvalidAccessKeyId": "the access key id is unknown",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "InvalidToken": "the session token is invalid",
    "ExpiredToken": "the session token has expired",
    "TokenRefreshRequired": "the session token has expired",
    "InvalidSecurity": "the security token is invalid",
}
CREDENTIAL_HINT = (
    "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the target's profile"
)
NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
ACCESS_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
REDIRECT_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301", "IllegalLocation"}


def part_size_for(part_number: int, fixed_part_size: int | None = None) -> int:
    """Given a 1-based part number, return that part's size in bytes.

    A `fixed_part_size` (the target's explicit part_size) is used for every part; otherwise the
    size follows `PART_SCHEDULE`. Raise ValueError for part numbers outside 1..MAX_PARTS.
    """
    if not 1 <= part_number <= MAX_PARTS:
        raise ValueError(f"part number {part_number} outside 1..{MAX_PARTS}")
    if fixed_part_size is not None:
        return fixed_part_size
    first_of_tier = 1
    for count, size in PART_SCHEDULE:
        if part_number < first_of_tier + count:
            return size
        first_of_tier += count
    return PART_SCHEDULE[-1][1]


def concurrency_for(part_size: int, max_concurrency: int | None = None) -> int:
    """Return how many parts of `part_size` may be uploaded at once.

    An explicit `max_concurrency` wins. Otherwise it is `DEFAULT_MAX_CONCURRENCY`, lowered (to
    1 at least) so that parts in flight plus the one being filled fit in `BUFFER_BUDGET`.
    """
    if max_concurrency is not None:
        return max_concurrency
    return max(1, min(DEFAULT_MAX_CONCURRENCY, BUFFER_BUDGET // part_size - 1))


def max_object_size(fixed_part_size: int | None = None) -> int:
    """Return the largest object a multipart upload can hold with this part size setting."""
    if fixed_part_size is not None:
        return fixed_part_size * MAX_PARTS
    return sum(count * size for count, size in PART_SCHEDULE)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class _Where:
    """What an S3 call was about, for error messages."""

    bucket: str
    endpoint: str
    key: str | None = None
    action: str = "accessing"

    @property
    def target(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key is not None else f"s3://{self.bucket}"


def classify_error(exc: BaseException, where: _Where) -> errors.OpskitError:
    """Given a boto3/botocore (or socket) exception, return the opskit error to raise.

    The message is one line and names the bucket or key; the original exception stays as
    `__cause__` for the debug log.
    """
    if isinstance(exc, errors.OpskitError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        return _classify_client_error(exc, where)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return errors.StorageError(
            f"no AWS credentials found for bucket {where.bucket}",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the target's profile",
        )
    if isinstance(
        exc,
        botocore.exceptions.PartialCredentialsError | botocore.exceptions.CredentialRetrievalError,
    ):
        return errors.StorageError(
            f"incomplete AWS credentials for bucket {where.bucket}: {_one_line(exc)}",
            CREDENTIAL_HINT,
        )
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return errors.ConfigError(_one_line(exc), "check AWS_PROFILE and the target's profile")
    if isinstance(exc, botocore.exceptions.SSLError):
        return errors.StorageUnreachable(
            f"TLS failed with S3 endpoint {where.endpoint} (bucket {where.bucket}): "
            f"{_one_line(exc)}"
        )
    if isinstance(exc, botocore.exceptions.ConnectionError):  # refused, DNS, connect timeout
        return errors.StorageUnreachable(
            f"cannot reach S3 endpoint {where.endpoint} (bucket {where.bucket})",
            "check endpoint_url / AWS_ENDPOINT_URL and the network",
        )
    if isinstance(exc, botocore.exceptions.HTTPClientError | ConnectionError | TimeoutError):
        return errors.StorageUnreachable(
            f"connection to S3 endpoint {where.endpoint} lost while {where.action} "
            f"{where.target}, after retries"
        )
    if isinstance(exc, botocore.exceptions.FlexibleChecksumError):
        return errors.ChecksumMismatch(
            f"S3 checksum mismatch while {where.action} {where.target}: {_one_line(exc)}"
        )
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return errors.UsageError(f"invalid S3 request for {where.target}: {_one_line(exc)}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return errors.StorageError(
            f"S3 failed while {where.action} {where.target}: {_one_line(exc)}"
        )
    return errors.StorageError(
        f"failed {where.action} {where.target}: {type(exc).__name__}: {_one_line(exc)}"
    )


def _classify_client_error(
    exc: botocore.exceptions.ClientError, where: _Where
) -> errors.OpskitError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = _one_line(error.get("Message", "") or code)
    if code == "NoSuchBucket":
        return errors.NotFound(
            f"bucket {where.bucket} does not exist at {where.endpoint}",
            "create it, or fix the target URL, endpoint_url or region",
        )
    if code in NOT_FOUND_CODES:
        return errors.NotFound(f"no object {where.target}")
    if code in CREDENTIAL_CODES:
        return errors.StorageError(
            f"S3 rejected the credentials for bucket {where.bucket}: {CREDENTIAL_CODES[code]}",
            CREDENTIAL_HINT,
        )
    if code in ACCESS_DENIED_CODES:
        return errors.StorageError(
            f"access denied while {where.action} {where.target}",
            "check the credentials and that their policy allows s3:ListBucket, s3:GetObject, "
            "s3:PutObject, s3:DeleteObject and s3:AbortMultipartUpload there",
        )
    if code in REDIRECT_CODES:
        region = error.get("Region") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPHeaders", {}
        ).get("x-amz-bucket-region")
        where_hint = f"set region: {region}" if region else "set the target's region"
        return errors.StorageError(f"bucket {where.bucket} is in another region", where_hint)
    if code == "InvalidObjectState":
        return errors.StorageError(
            f"{where.target} is archived (GLACIER or DEEP_ARCHIVE storage class)",
            "restore it in S3 first, or use GLACIER_IR for instantly readable archives",
        )
    if code == "NoSuchUpload":
        return errors.StorageError(
            f"the multipart upload of {where.target} vanished (aborted elsewhere?)"
        )
    if code.startswith("KMS") or code == "KMS.NotFoundException":
        return errors.StorageError(f"KMS refused while {where.action} {where.target}: {message}")
    if code in ("PreconditionFailed", "412"):
        return errors.StorageError(f"{where.target} changed while {where.action} it")
    return errors.StorageError(f"S3 failed while {where.action} {where.target}: {code}: {message}")


class _PartBody(io.RawIOBase):
    """A seekable reader over one part's bytes, without copying them (botocore seeks to retry)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        # A view, not a copy: botocore hashes it and the socket sends it as it is.
        end = len(self._view) if size is None or size < 0 else self._position + size
        data = self._view[self._position : end]
        self._position += len(data)
        return cast(bytes, data)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _PartBuffer:
    """One part's bytes, in an anonymous memory map of the part's size.

    Pages are taken only as bytes are written and go back to the system the moment the part
    is released: malloc would keep freed multi-MiB blocks in its arenas, and peak memory would
    drift above (concurrency + 1) parts.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.filled = 0
        self._map: mmap.mmap | None = mmap.mmap(-1, capacity) if capacity else None

    def append(self, view: memoryview) -> int:
        """Copy as much of `view` as fits; return how many bytes were taken."""
        take = min(len(view), self.capacity - self.filled)
        if take:
            assert self._map is not None
            self._map[self.filled : self.filled + take] = view[:take]
            self.filled += take
        return take

    @property
    def full(self) -> bool:
        return self.filled == self.capacity

    def view(self) -> memoryview:
        """Return the written bytes, without copying them."""
        if self._map is None:
            return memoryview(b"")
        return memoryview(self._map)[: self.filled]

    def release(self) -> None:
        """Give the memory back now (or, if a view is still alive, when it goes)."""
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a view still points into it: unmapped when the last one goes
            self._map = None


class S3ObjectWriter(ObjectWriter):
    """Streams one object to S3 as a multipart upload; a small object goes up in one PUT.

    `write()` fills a part buffer; a full part is handed to a worker thread and uploaded while
    the producer goes on. `write()` blocks while the allowed number of parts is in flight, so
    memory stays at (concurrency + 1) part buffers.
    """

    def __init__(self, storage: S3Storage, name: str) -> None:
        self._storage = storage
        self._client = storage.client
        self._name = name
        self._key = storage.key(name)
        self._where = _Where(storage.bucket, storage.endpoint, self._key, "uploading")
        self._fixed_part_size = storage.part_size
        self._max_concurrency = storage.max_concurrency
        self._buffer: _PartBuffer | None = None
        self._part_number = 0  # parts handed to the workers so far
        self._upload_id: str | None = None
        self._parts: dict[int, dict[str, Any]] = {}
        self._condition = threading.Condition()
        self._in_flight = 0
        self._failure: BaseException | None = None
        self._aborting = threading.Event()
        self._server_aborted = False
        self._creating = False
        self._work: queue.SimpleQueue[tuple[int, _PartBuffer] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._state = "open"
        self.size = 0

    # -- the producer side -------------------------------------------------------------------

    def _current_part_size(self) -> int:
        return part_size_for(self._part_number + 1, self._fixed_part_size)

    def write(self, data: bytes | memoryview) -> int:
        if self._state != "open":
            raise ValueError(f"write to {self._where.target} after commit or abort")
        self._raise_failure()
        view = memoryview(data).cast("B")
        written = len(view)
        while view:
            if self._buffer is None:
                if self._part_number >= MAX_PARTS:
                    raise errors.StorageError(
                        f"{self._where.target} needs more than {MAX_PARTS} parts of "
                        f"{self._current_part_size_text()}",
                        "raise the target's part_size (or leave it unset to let parts grow)",
                    )
                self._buffer = _PartBuffer(self._current_part_size())
            view = view[self._buffer.append(view) :]
            if self._buffer.full:
                self._submit_part()
        self.size += written
        return written

    def _current_part_size_text(self) -> str:
        return f"{part_size_for(MAX_PARTS, self._fixed_part_size) // MiB} MiB"

    def _submit_part(self) -> None:
        """Hand the filled buffer to a worker; block while the allowed parts are in flight."""
        assert self._buffer is not None
        buffer = self._buffer
        part_number = self._part_number + 1
        if self._upload_id is None:
            self._create_upload()
        limit = concurrency_for(buffer.capacity, self._max_concurrency)
        self._start_workers(limit)
        with self._condition:
            while self._in_flight >= limit and self._failure is None:
                self._condition.wait(timeout=1.0)
            self._raise_failure()
            self._in_flight += 1
        self._buffer = None
        self._part_number = part_number
        self._work.put((part_number, buffer))

    def _create_upload(self) -> None:
        self._creating = True  # an interrupt now may leave an upload we have no id for
        try:
            response = self._client.create_multipart_upload(
                Bucket=self._storage.bucket,
                Key=self._key,
                ChecksumAlgorithm="SHA256",
                **self._storage.put_arguments(self._name),
            )
        except Exception as exc:
            raise classify_error(exc, self._where) from exc
        self._upload_id = response["UploadId"]
        self._creating = False
        log.debug("multipart upload started", key=self._key, upload_id=self._upload_id)

    def _start_workers(self, wanted: int) -> None:
        while len(self._workers) < wanted:
            worker = threading.Thread(
                target=self._work_loop,
                name=f"opskit-s3-part-{len(self._workers)}",
                daemon=True,  # never keep the process alive on exit; abort() waits for them
            )
            worker.start()
            self._workers.append(worker)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise classify_error(self._failure, self._where) from self._failure

    # -- the worker side ---------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            part_number, buffer = item
            try:
                if not self._aborting.is_set():
                    self._upload_part(part_number, buffer.view())
            except BaseException as exc:  # noqa: BLE001 - handed to the producer thread
                log.debug("part upload failed", key=self._key, part=part_number, error=repr(exc))
                exc.__traceback__ = None  # it would keep the part's bytes alive
                with self._condition:
                    if self._failure is None:
                        self._failure = exc
            finally:
                buffer.release()
                del buffer, item
                with self._condition:
                    self._in_flight -= 1
                    self._condition.notify_all()

    def _upload_part(self, part_number: int, view: memoryview) -> None:
        checksum = base64.b64encode(hashlib.sha256(view).digest()).decode("ascii")
        response = self._client.upload_part(
            Bucket=self._storage.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=part_number,
            Body=_PartBody(view),
            ContentLength=len(view),
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        returned = response.get("ChecksumSHA256")
        if returned is not None and returned != checksum:
            raise errors.ChecksumMismatch(
                f"S3 stored part {part_number} of {self._where.target} with a different "
                f"SHA-256 than was sent"
            )
        with self._condition:
            self._parts[part_number] = {
                "PartNumber": part_number,
                "ETag": response["ETag"],
                "ChecksumSHA256": checksum,
            }
        if self._server_aborted:  # finished after the upload was aborted: free it again
            self._abort_upload()

    # -- commit and abort --------------------------------------------------------------------

    def commit(self) -> None:
        if self._state != "open":
            raise ValueError(f"commit of {self._where.target} after commit or abort")
        try:
            if self._upload_id is None:
                self._put_whole()
            else:
                if self._buffer is not None and self._buffer.filled:
                    self._submit_part()
                self._wait_for_parts()
                self._complete()
        except BaseException as exc:
            self.abort()
            if isinstance(exc, Exception):
                raise classify_error(exc, self._where) from exc
            raise
        self._state = "committed"
        self._stop_workers(wait=None)  # idle by now: they exit at once

    def _put_whole(self) -> None:
        buffer = self._buffer or _PartBuffer(0)
        view = buffer.view()
        checksum = base64.b64encode(hashlib.sha256(view).digest()).decode("ascii")
        self._client.put_object(
            Bucket=self._storage.bucket,
            Key=self._key,
            Body=_PartBody(view),
            ContentLength=len(view),
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
            **self._storage.put_arguments(self._name),
        )
        del view
        buffer.release()
        self._buffer = None

    def _wait_for_parts(self) -> None:
        with self._condition:
            while self._in_flight and self._failure is None:
                self._condition.wait(timeout=1.0)
        self._raise_failure()

    def _complete(self) -> None:
        parts = [self._parts[number] for number in sorted(self._parts)]
        if len(parts) != self._part_number:
            raise errors.StorageError(
                f"only {len(parts)} of {self._part_number} parts of {self._where.target} uploaded"
            )
        self._client.complete_multipart_upload(
            Bucket=self._storage.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )
        log.debug("multipart upload completed", key=self._key, parts=len(parts), size=self.size)

    def abort(self) -> None:
        """Discard everything: stop the workers, abort the multipart upload. Never raises for
        S3 failures (it logs a warning instead), so the original error stays the one reported."""
        if self._state in ("aborted", "committed"):
            return
        self._state = "aborted"
        self._aborting.set()
        if self._buffer is not None:
            self._buffer.release()
            self._buffer = None
        self._stop_workers(wait=ABORT_WAIT_SECONDS)
        if self._upload_id is not None:
            self._abort_upload()
            self._server_aborted = True
        elif self._creating:
            self._abort_unknown_uploads()

    def _abort_unknown_uploads(self) -> None:
        """Abort the uploads of our key that S3 may have created while the answer to our
        CreateMultipartUpload was lost to an interrupt (object names of backups are unique)."""
        try:
            response = self._client.list_multipart_uploads(
                Bucket=self._storage.bucket, Prefix=self._key
            )
        except Exception as exc:  # noqa: BLE001 - reported, the original error wins
            self._warn_abort_failed(exc)
            return
        for upload in response.get("Uploads", []):
            if upload["Key"] == self._key:
                self._upload_id = upload["UploadId"]
                self._abort_upload()

    def _abort_upload(self) -> None:
        try:
            self._client.abort_multipart_upload(
                Bucket=self._storage.bucket, Key=self._key, UploadId=self._upload_id
            )
            log.info("multipart upload aborted", key=self._key, upload_id=self._upload_id)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return
            self._warn_abort_failed(exc)
        except Exception as exc:  # noqa: BLE001 - reported, the original error wins
            self._warn_abort_failed(exc)

    def _warn_abort_failed(self, exc: BaseException) -> None:
        log.warning(
            "could not abort the multipart upload; its parts stay billed until a lifecycle "
            "rule (AbortIncompleteMultipartUpload) removes them",
            key=self._key,
            bucket=self._storage.bucket,
            upload_id=self._upload_id,
            error=str(classify_error(exc, self._where)),
        )

    def _stop_workers(self, wait: float | None) -> None:
        """Ask the workers to exit after their current part; wait up to `wait` seconds (None:
        don't wait)."""
        for _ in self._workers:
            self._work.put(None)
        if wait is None:
            self._workers = []
            return
        deadline = time.monotonic() + wait
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(worker.is_alive() for worker in self._workers):
            log.warning(
                "parts still uploading after abort; they are aborted when they finish",
                key=self._key,
            )
        self._workers = [worker for worker in self._workers if worker.is_alive()]


class S3ReadStream(io.RawIOBase):
    """A streaming, read-only view of one object, resumed by a ranged GET if the connection
    breaks mid-way. Memory stays at the caller's read size."""

    def __init__(self, storage: S3Storage, key: str, response: dict[str, Any]) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._body = response["Body"]
        self._etag = response.get("ETag")
        self._size = int(response.get("ContentLength", 0))
        self._position = 0
        self._resumes = 0
        self._where = _Where(storage.bucket, storage.endpoint, key, "reading")

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed S3 stream")
        while True:
            try:
                data = self._body.read(None if size is None or size < 0 else size)
            except (
                botocore.exceptions.HTTPClientError,
                botocore.exceptions.IncompleteReadError,
                ConnectionError,
                TimeoutError,
            ) as exc:
                self._resume(exc)
                continue
            except Exception as exc:
                raise classify_error(exc, self._where) from exc
            self._position += len(data)
            return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _resume(self, exc: BaseException) -> None:
        """Reopen the object at the current position, or raise if that failed too often."""
        self._resumes += 1
        if self._resumes > MAX_READ_RESUMES:
            raise classify_error(exc, self._where) from exc
        log.warning("S3 download interrupted, resuming", key=self._key, at=self._position)
        time.sleep(min(2.0**self._resumes, 20.0))
        self._close_body()
        arguments: dict[str, Any] = {"Range": f"bytes={self._position}-"}
        if self._etag:
            arguments["IfMatch"] = self._etag
        try:
            response = self._storage.client.get_object(
                Bucket=self._storage.bucket, Key=self._key, **arguments
            )
        except Exception as retry_exc:
            raise classify_error(retry_exc, self._where) from retry_exc
        self._body = response["Body"]

    def _close_body(self) -> None:
        try:
            self._body.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it goes anyway
            pass

    def close(self) -> None:
        if not self.closed:
            self._close_body()
        super().close()


class S3Storage(Storage):
    """Objects are keys below `prefix/` in `bucket`; names map one to one onto key suffixes."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Any,
        *,
        storage_class: str | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        part_size: int | None = None,
        max_concurrency: int | None = None,
        probe_client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.storage_class = storage_class
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint = str(client.meta.endpoint_url)
        self._probe_client_factory = probe_client_factory
        self._probe_client: Any = None
        self._reached = False

    @classmethod
    def from_target(cls, target: TargetConfig) -> S3Storage:
        """Given a target with an s3:// url, return its store. boto3's standard chain supplies
        credentials, region and endpoint; the target's settings override them.

        Raise `UsageError` for a URL without a bucket, `ConfigError` for an unknown profile or
        a malformed endpoint.
        """
        bucket, prefix = parse_s3_url(target.url)
        concurrency = target.max_concurrency or DEFAULT_MAX_CONCURRENCY
        try:
            botocore_session = botocore.session.Session()
            session = boto3.session.Session(
                botocore_session=botocore_session,
                profile_name=target.profile,
                region_name=target.region,
            )
            retry_mode, max_attempts = _retry_settings(botocore_session)
            config = botocore.config.Config(
                retries={"mode": retry_mode, "total_max_attempts": max_attempts},
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                max_pool_connections=max(10, concurrency + 4),
                tcp_keepalive=True,
                user_agent_extra=f"opskit/{__version__}",
                s3={"addressing_style": target.addressing_style}
                if target.addressing_style
                else None,
            )
            client = session.client("s3", endpoint_url=target.endpoint_url, config=config)
            probe_config = config.merge(
                botocore.config.Config(
                    retries={
                        "mode": retry_mode,
                        "total_max_attempts": min(PROBE_ATTEMPTS, max_attempts),
                    }
                )
            )
        except botocore.exceptions.ProfileNotFound as exc:
            raise errors.ConfigError(
                f"AWS profile {exc.kwargs.get('profile')!r} (for {target.url}) is not in "
                "~/.aws/config or ~/.aws/credentials",
                "fix AWS_PROFILE or the target's profile",
            ) from exc
        except (ValueError, botocore.exceptions.BotoCoreError) as exc:
            raise errors.ConfigError(
                f"cannot set up S3 for {target.url}: {_one_line(exc)}"
            ) from exc
        return cls(
            bucket,
            prefix,
            client,
            storage_class=target.storage_class,
            sse=target.sse,
            sse_kms_key_id=target.sse_kms_key_id,
            part_size=target.part_size,
            max_concurrency=target.max_concurrency,
            probe_client_factory=lambda: session.client(
                "s3", endpoint_url=target.endpoint_url, config=probe_config
            ),
        )

    # -- naming ------------------------------------------------------------------------------

    def key(self, name: str) -> str:
        """Return the S3 key of object `name`."""
        check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _key_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _where(self, action: str, key: str | None = None) -> _Where:
        return _Where(self.bucket, self.endpoint, key, action)

    def put_arguments(self, name: str) -> dict[str, str]:
        """Return the storage-class and encryption arguments for writing object `name`."""
        arguments: dict[str, str] = {}
        if self.storage_class and not name.endswith(METADATA_SUFFIX):
            arguments["StorageClass"] = self.storage_class
        if self.sse:
            arguments["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            arguments["SSEKMSKeyId"] = self.sse_kms_key_id
        return arguments

    def _probe(self) -> Any:
        """Return the client with few retries, for quick answers."""
        if self._probe_client is None:
            factory = self._probe_client_factory
            self._probe_client = factory() if factory is not None else self.client
        return self._probe_client

    def _check_reachable(self) -> None:
        """On first use, fail fast if the endpoint cannot be reached at all.

        The main client retries a refused connection 10 times with backoff (about half a
        minute); one HeadBucket with few retries tells a wrong endpoint in seconds. Any answer
        over HTTP (even an error) counts as reached: the real call then reports it.
        """
        if self._reached:
            return
        try:
            self._probe().head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError:
            pass
        except Exception as exc:
            error = classify_error(exc, self._where("connecting to"))
            if isinstance(error, errors.StorageUnreachable):
                raise error from exc
        self._reached = True

    def _call(self, action: str, key: str | None, call: Callable[[], Any]) -> Any:
        """Run one S3 call, translating failures into opskit errors."""
        try:
            self._check_reachable()
            return call()
        except Exception as exc:
            error = classify_error(exc, self._where(action, key))
            if isinstance(error, errors.NotFound) and key is not None:
                error = self._refine_not_found(error)
            elif _error_code(exc) == "403" and key is not None:
                error = self._refine_forbidden(error, action, key)
            raise error from exc

    def _refine_forbidden(
        self, error: errors.OpskitError, action: str, key: str
    ) -> errors.OpskitError:
        """A HEAD 403 has no body to say whether the credentials are wrong or access is
        denied: a one-byte GET of the same key says which."""
        try:
            self.client.get_object(Bucket=self.bucket, Key=key, Range="bytes=0-0")
        except Exception as exc:  # noqa: BLE001 - the answer is in the error
            if _error_code(exc) not in ("403", "NoSuchKey", "InvalidRange"):
                return classify_error(exc, self._where(action, key))
        return error

    def _refine_not_found(self, error: errors.NotFound) -> errors.OpskitError:
        """A HEAD 404 does not say whether the key or the bucket is missing: ask."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchBucket", "NotFound"):
                return errors.NotFound(
                    f"bucket {self.bucket} does not exist at {self.endpoint}",
                    "create it, or fix the target URL, endpoint_url or region",
                )
        except Exception:  # noqa: BLE001 - keep the original answer
            pass
        return error

    # -- the Storage interface ---------------------------------------------------------------

    def create(self, name: str) -> ObjectWriter:
        key = self.key(name)
        self._call("uploading", key, lambda: None)  # fail fast on an unreachable endpoint
        return S3ObjectWriter(self, name)

    def open(self, name: str) -> BinaryIO:
        key = self.key(name)
        response = self._call(
            "reading", key, lambda: self.client.get_object(Bucket=self.bucket, Key=key)
        )
        return cast(BinaryIO, S3ReadStream(self, key, response))

    def stat(self, name: str) -> ObjectInfo:
        key = self.key(name)
        response = self._call(
            "reading", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key)
        )
        return ObjectInfo(name=name, size=int(response["ContentLength"]))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = self._key_prefix()
        paginator = self.client.get_paginator("list_objects_v2")
        found = []

        def collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for entry in page.get("Contents", []):
                    name = entry["Key"][len(root) :]
                    if _is_valid_name(name):
                        found.append(ObjectInfo(name=name, size=int(entry["Size"])))

        self._call("listing", self.prefix or None, collect)
        yield from sorted(found, key=lambda info: info.name)

    def remove(self, name: str) -> None:
        key = self.key(name)
        # DeleteObject succeeds for a missing key; the interface promises NotFound.
        self._call("removing", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        self._call("removing", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def check_writable(self) -> None:
        """Raise now if the bucket is missing, unreachable or refuses these credentials.

        Lists one key under the prefix, with few retries so it is fast; unlike HeadBucket, its
        errors say why. S3 cannot promise a write is allowed without trying one: a PutObject
        denial is reported by the upload itself.
        """
        probe = self._probe()
        self._call(
            "checking",
            self.prefix or None,
            lambda: probe.list_objects_v2(Bucket=self.bucket, Prefix=self._key_prefix(), MaxKeys=1),
        )
        self._reached = True

    def close(self) -> None:
        self.client.close()
        if self._probe_client is not None and self._probe_client is not self.client:
            self._probe_client.close()


def _error_code(exc: BaseException) -> str | None:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return None


def _retry_settings(botocore_session: botocore.session.Session) -> tuple[str, int]:
    """Return (retry mode, max attempts): the user's AWS_RETRY_MODE / AWS_MAX_ATTEMPTS (or
    retry_mode / max_attempts in ~/.aws/config) when set, else ours."""
    scoped = botocore_session.get_scoped_config()
    mode = os.environ.get("AWS_RETRY_MODE") or scoped.get("retry_mode") or RETRY_MODE
    attempts = botocore_session.get_config_variable("max_attempts") or MAX_ATTEMPTS
    return str(mode), int(attempts)


def _is_valid_name(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False  # a "directory" marker (`a/`) or a foreign key like `a//b`
    return True


def parse_s3_url(url: str) -> tuple[str, str]:
    """Given `s3://bucket/prefix`, return (bucket, prefix without slashes at its ends).

    Raise `UsageError` when the bucket is missing.
    """
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise errors.UsageError(f"invalid S3 location {url!r}", "write it as s3://bucket/prefix")
    return parsed.netloc, parsed.path.strip("/")

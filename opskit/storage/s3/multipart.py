"""One S3 multipart upload: create, parts (uploaded or copied), complete, and a discard that
never raises. The writer drives two kinds: the backup object itself and its staging objects."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import botocore.exceptions

from opskit import errors
from opskit.log import get_logger
from opskit.storage.s3.buffers import PartBody, sha256_base64
from opskit.storage.s3.failures import Where, classify_error

log = get_logger(__name__)

# Answers to an UploadPart without the part's ETag tolerated before giving up (each request is
# retried by botocore as well for errors it recognises).
PART_ANSWER_ATTEMPTS = 3


class MultipartUpload:
    """Parts may be uploaded from several threads at once; the rest is the producer's."""

    def __init__(
        self, client: Any, bucket: str, key: str, where: Where, put_arguments: dict[str, str]
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.where = where
        self._put_arguments = put_arguments
        self.upload_id: str | None = None
        self.completed = False
        self.version_id: str | None = None  # of the completed object, in a versioned bucket
        self._creating = False
        self._discarded = False
        self._parts: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @property
    def created(self) -> bool:
        return self.upload_id is not None

    @property
    def parts_done(self) -> int:
        with self._lock:
            return len(self._parts)

    def create(self) -> None:
        self._creating = True  # an interrupt now may leave an upload we have no id for
        response = self._call(
            "starting the upload of",
            lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ChecksumAlgorithm="SHA256", **self._put_arguments
            ),
        )
        self.upload_id = response["UploadId"]
        self._creating = False
        log.debug("multipart upload started", key=self.key, upload_id=self.upload_id)
        if response.get("ResponseMetadata", {}).get("RetryAttempts"):
            # A retried create may have started an upload whose answer was lost (a connection
            # reset after S3 acted): nothing would ever abort it, and its parts stay billed.
            self._abort_unknown_uploads(keep=self.upload_id)

    def upload_part(self, part_number: int, view: memoryview) -> None:
        """Upload `view` as part `part_number`, with its SHA-256 for S3 to check.

        An answer without the part's ETag (its headers lost to a broken connection after the
        status line, which the HTTP client takes as complete) is no answer: the part is sent
        again, up to PART_ANSWER_ATTEMPTS times in all.
        """
        checksum = sha256_base64(view)
        for _ in range(PART_ANSWER_ATTEMPTS):
            response = self._call(
                "uploading",
                lambda: self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=part_number,
                    Body=PartBody(view),
                    ContentLength=len(view),
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=checksum,
                ),
            )
            if response.get("ETag"):
                break
            log.info("S3 answered a part without its ETag", key=self.key, part=part_number)
        else:
            raise errors.StorageError(
                f"S3 answered part {part_number} of {self.where.target} without its ETag "
                f"{PART_ANSWER_ATTEMPTS} times (a broken connection or proxy?)"
            )
        returned = response.get("ChecksumSHA256")
        if returned is not None and returned != checksum:
            raise errors.ChecksumMismatch(
                f"S3 stored part {part_number} of {self.where.target} with a different "
                "SHA-256 than was sent"
            )
        self._record(part_number, response["ETag"], checksum)

    def copy_part(self, part_number: int, source: MultipartUpload) -> None:
        """Make part `part_number` a server-side copy of the whole object `source` completed."""
        # No VersionId even in a versioned bucket: the key is unique to this writer, and copying
        # a named version would need s3:GetObjectVersion as well.
        source_location = {"Bucket": self.bucket, "Key": source.key}
        response = self._call(
            f"copying {source.where.target} into part {part_number} of",
            lambda: self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=part_number,
                CopySource=source_location,
            ),
        )
        result = response["CopyPartResult"]
        # S3 computes the copied part's SHA-256 itself; some S3-compatible stores do not.
        self._record(part_number, result["ETag"], result.get("ChecksumSHA256"))

    def _record(self, part_number: int, etag: str, checksum: str | None) -> None:
        part: dict[str, Any] = {"PartNumber": part_number, "ETag": etag}
        if checksum is not None:
            part["ChecksumSHA256"] = checksum
        with self._lock:
            self._parts[part_number] = part
        if self._discarded:  # finished after the upload was aborted: free it again
            self._abort()

    def complete(self, part_count: int) -> None:
        """Join parts 1..part_count into the object; raise if any of them is missing."""
        with self._lock:
            parts = [self._parts[number] for number in sorted(self._parts)]
        if len(parts) != part_count:
            raise errors.StorageError(
                f"only {len(parts)} of {part_count} parts of {self.where.target} uploaded"
            )
        response = self._call(
            "completing",
            lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            ),
        )
        self.version_id = response.get("VersionId")
        self.completed = True
        with self._lock:
            self._parts.clear()  # thousands of staging uploads must not pile up their parts
        log.debug("multipart upload completed", key=self.key, parts=len(parts))

    def discard(self) -> None:
        """Abort the upload, or delete the object if it was completed. Never raises for S3
        failures (it logs a warning instead), so the original error stays the one reported."""
        self._discarded = True
        if self.completed:
            self._delete_object()
        elif self.upload_id is not None:
            self._abort()
        elif self._creating:
            self._abort_unknown_uploads()

    def delete_object(self) -> None:
        """Remove the completed object (a staging object after its copy). In a versioned
        bucket, its version is deleted: a delete marker would leave the bytes billed."""
        arguments = {"VersionId": self.version_id} if self.version_id else {}
        self._call(
            "removing",
            lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key, **arguments),
        )
        self.completed = False

    def _call(self, action: str, call: Callable[[], Any]) -> Any:
        """Run one S3 call; raise its failure as an opskit error naming this key and action."""
        try:
            return call()
        except Exception as exc:
            where = dataclasses.replace(self.where, action=action)
            raise classify_error(exc, where) from exc

    def _delete_object(self) -> None:
        try:
            self.delete_object()
        except errors.OpskitError as exc:
            log.warning("could not remove a staging object", key=self.key, error=str(exc))

    def _abort_unknown_uploads(self, keep: str | None = None) -> None:
        """Abort the uploads of our key, but `keep`, that S3 may have created while the answer
        to our CreateMultipartUpload was lost (to an interrupt, or to a broken connection before
        a retry). Object names of backups and staging objects are unique to their writer."""
        try:
            response = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.key)
        except Exception as exc:  # noqa: BLE001 - reported, the original error wins
            self._warn_abort_failed(exc)
            return
        for upload in response.get("Uploads", []):
            if upload["Key"] == self.key and upload["UploadId"] != keep:
                self._abort(upload["UploadId"])

    def _abort(self, upload_id: str | None = None) -> None:
        """Abort upload `upload_id` (default: ours); log a warning if that fails."""
        upload_id = upload_id or self.upload_id
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
            log.info("multipart upload aborted", key=self.key, upload_id=upload_id)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return
            self._warn_abort_failed(exc, upload_id)
        except Exception as exc:  # noqa: BLE001 - reported, the original error wins
            self._warn_abort_failed(exc, upload_id)

    def _warn_abort_failed(self, exc: BaseException, upload_id: str | None = None) -> None:
        log.warning(
            "could not abort the multipart upload; its parts stay billed until a lifecycle "
            "rule (AbortIncompleteMultipartUpload) removes them",
            key=self.key,
            bucket=self.bucket,
            upload_id=upload_id or self.upload_id,
            error=str(classify_error(exc, self.where)),
        )

"""The S3 (and S3-compatible) backup store. This package is the only place that imports boto3.

Objects live under `s3://bucket/prefix/`. Writes are streaming multipart uploads (`writer`)
cut by a fixed-memory plan (`plan`); reads stream and resume (`reader`); every boto3/botocore
failure becomes a one-line opskit error naming the bucket or key (`failures`).
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from opskit import __version__, errors
from opskit.config.targets import TargetConfig
from opskit.log import get_logger
from opskit.process_owner import owner_is_alive
from opskit.storage.base import ObjectInfo, ObjectWriter, Storage, check_name
from opskit.storage.s3.failures import Where, classify_error, error_code, one_line
from opskit.storage.s3.plan import DEFAULT_MAX_CONCURRENCY, PartPlan
from opskit.storage.s3.reader import S3ReadStream
from opskit.storage.s3.writer import (
    STAGING_DIRECTORY,
    S3ObjectWriter,
    parse_staging_directory_name,
)

log = get_logger(__name__)

# Retries for throttling, 5xx and connection resets: botocore's "standard" mode (exponential
# backoff with jitter, a retry quota) with 10 attempts in all instead of its default 3. The
# user's AWS_RETRY_MODE / AWS_MAX_ATTEMPTS (or ~/.aws/config) win.
RETRY_MODE = "standard"
MAX_ATTEMPTS = 10
# check_writable() should answer fast: its client gives up after this many attempts.
PROBE_ATTEMPTS = 3
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60

# Staging objects of a dead writer of this host are removed after this long; anyone's after
# STALE_STAGING_SECONDS (see S3Storage._remove_orphaned_staging).
DEAD_OWNER_GRACE_SECONDS = 3600
STALE_STAGING_SECONDS = 2 * 86400

# Objects with this suffix are metadata: they keep the STANDARD storage class, so that `list`
# can always read them at once (a GLACIER metadata file could not be read without a restore).
METADATA_SUFFIX = ".json"


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
        plan: PartPlan | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.storage_class = storage_class
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.plan = plan or (PartPlan.fixed(part_size) if part_size else PartPlan.default())
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint = str(client.meta.endpoint_url)
        self._probe_client_factory = probe_client_factory
        self._probe_client: Any = None
        self._reached = False
        self._staging_swept = False

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
            raise errors.ConfigError(f"cannot set up S3 for {target.url}: {one_line(exc)}") from exc
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

    def _where(self, action: str, key: str | None = None) -> Where:
        return Where(self.bucket, self.endpoint, key, action)

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
            elif error_code(exc) == "403" and key is not None:
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
            if error_code(exc) not in ("403", "NoSuchKey", "InvalidRange"):
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
        self._remove_orphaned_staging()
        return S3ObjectWriter(self, name, self.plan)

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
        return ObjectInfo(name, int(response["ContentLength"]), response.get("ETag", ""))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = self._key_prefix()
        paginator = self.client.get_paginator("list_objects_v2")
        found = []

        def collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for entry in page.get("Contents", []):
                    name = entry["Key"][len(root) :]
                    if _is_valid_name(name) and not name.startswith(STAGING_DIRECTORY + "/"):
                        found.append(ObjectInfo(name, int(entry["Size"]), entry.get("ETag", "")))

        self._call("listing", self.prefix or None, collect)
        yield from sorted(found, key=lambda info: info.name)

    def list_directories(self) -> builtins.list[str]:
        """One listing with a delimiter: S3 returns each first part once (as a CommonPrefix),
        however many objects are below it."""
        root = self._key_prefix()
        paginator = self.client.get_paginator("list_objects_v2")
        found = []

        def collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root, Delimiter="/"):
                for entry in page.get("CommonPrefixes", []):
                    name = entry["Prefix"][len(root) :].removesuffix("/")
                    if _is_valid_name(name) and "/" not in name and name != STAGING_DIRECTORY:
                        found.append(name)

        self._call("listing", self.prefix or None, collect)
        return sorted(found)

    def remove(self, name: str) -> None:
        key = self.key(name)
        # DeleteObject succeeds for a missing key; the interface promises NotFound.
        self._call("removing", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        self._call("removing", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def _remove_orphaned_staging(self) -> None:
        """Remove staging objects and uploads that a killed writer (SIGKILL, OOM, power loss)
        left: nothing else would, as they are complete objects. Best effort, once per store
        (a backup creates the archive and its metadata).

        Those of a dead process of this host go after an hour; any older than two days go too,
        whoever made them, as an assembled part never takes that long (host names and pids
        can repeat across containers)."""
        if self._staging_swept:
            return
        self._staging_swept = True
        root = self.key(STAGING_DIRECTORY) + "/"
        now = time.time()

        def orphaned(key: str) -> bool:
            parsed = parse_staging_directory_name(key[len(root) :].split("/", 1)[0])
            if parsed is None:
                return False  # not made by opskit: not ours to remove
            owner, created = parsed
            age = now - created
            dead_here = not owner_is_alive(owner)
            return age > STALE_STAGING_SECONDS or (dead_here and age > DEAD_OWNER_GRACE_SECONDS)

        try:
            objects = self.client.get_paginator("list_objects_v2")
            for page in objects.paginate(Bucket=self.bucket, Prefix=root):
                for entry in page.get("Contents", []):
                    if orphaned(entry["Key"]):
                        log.info("removing an orphaned staging object", key=entry["Key"])
                        self.client.delete_object(Bucket=self.bucket, Key=entry["Key"])
            uploads = self.client.get_paginator("list_multipart_uploads")
            for page in uploads.paginate(Bucket=self.bucket, Prefix=root):
                for upload in page.get("Uploads", []):
                    if orphaned(upload["Key"]):
                        log.info("aborting an orphaned staging upload", key=upload["Key"])
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
        except Exception as exc:  # noqa: BLE001 - a later step reports real trouble
            log.debug("could not remove orphaned staging objects", error=repr(exc))

    def remove_leftovers(self) -> None:
        self._remove_orphaned_staging()

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

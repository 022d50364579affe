"""Streaming downloads that resume where a broken connection left off."""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from opskit.log import get_logger
from opskit.storage.s3.failures import Where, classify_error

if TYPE_CHECKING:
    from opskit.storage.s3.store import S3Storage

log = get_logger(__name__)

# A download interrupted mid-stream is resumed from where it stopped (a ranged GET), this often.
MAX_READ_RESUMES = 5


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
        self._where = Where(storage.bucket, storage.endpoint, key, "reading")

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

"""Piece buffers: bytes held for one upload request, and the seekable body botocore reads."""

from __future__ import annotations

import base64
import hashlib
import io
import mmap
from typing import Any, cast


class PartBody(io.RawIOBase):
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


class PartBuffer:
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


def sha256_base64(view: memoryview) -> str:
    """The SHA-256 of `view` as S3's checksum headers carry it."""
    return base64.b64encode(hashlib.sha256(view).digest()).decode("ascii")

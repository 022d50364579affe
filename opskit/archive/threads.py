"""Pipeline stages that run in their own thread, so hashing and storage I/O overlap (de)compression.

hashlib, zstandard and file/socket I/O all release the GIL on large buffers, so a second thread
gives real parallelism on the two cores we measure on: restores got ~0.6 s per GiB faster when
the sha256 moved off the decompressing thread. Queues are bounded: memory stays at `depth`
chunks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

CHUNK_SIZE = 1 << 20


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


_END = object()
DEPTH = 4  # chunks of 1 MiB per queue: enough to smooth bursts, little memory


class BackgroundSink:
    """A sink whose `write` hands data to a thread that writes it to `sink`.

    Call `finish()` after the last write (raises what the thread raised), or `abort()`.
    """

    def __init__(self, sink: Sink, depth: int = DEPTH) -> None:
        self.sink = sink
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="opskit-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                # A timeout, not a plain get(): a Ctrl-C can land inside the caller's put()
                # and lose its wake-up, and abort() must never wait on this thread for that.
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stopped.is_set():
                    return
                continue
            if item is _END:
                return
            if self._error is None and not self._stopped.is_set():
                try:
                    self.sink.write(item)  # type: ignore[arg-type]
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = exc

    def write(self, data: bytes | memoryview) -> int:
        if self._error is not None:
            raise self._error
        self._queue.put(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Compressors call flush; ordering is kept by the queue, so nothing to do."""

    def finish(self) -> None:
        self._queue.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop the thread: it drops what is queued and ends within 0.1 s of its last write."""
        self._stopped.set()
        self._thread.join(timeout=30)


class _Stopped(Exception):
    """Raised inside a producing thread's `_put` when the consumer went away."""


class _ProducingThread:
    """A thread that runs `_produce()` and hands its chunks over through a bounded queue.

    The consumer takes them with `_next()`; `close()` stops the thread, and neither side ever
    blocks forever on the other.
    """

    thread_name = "opskit-producer"

    def __init__(self, depth: int) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def _produce(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self._produce()
        except _Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            self._error = exc
        try:
            self._put(_END)
        except _Stopped:
            pass

    def _put(self, item: object) -> None:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _next(self) -> object:
        """The next chunk, or the end marker; also the end marker once closed."""
        while True:
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stopped.is_set():
                    return _END

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)


class ReadAhead(_ProducingThread):
    """A readable that a thread fills from `stream` ahead of the reader, `depth` chunks deep."""

    thread_name = "opskit-readahead"

    def __init__(self, stream: Readable, depth: int = DEPTH) -> None:
        super().__init__(depth)
        self.stream = stream
        self._buffer = memoryview(b"")
        self._done = False
        self._thread.start()

    def _produce(self) -> None:
        while chunk := self.stream.read(CHUNK_SIZE):
            self._put(chunk)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = 1 << 62
        parts = []
        while size > 0:
            if not self._buffer:
                if self._done:
                    break
                item = self._next()
                if item is _END:
                    self._done = True
                    if self._error is not None:
                        raise self._error
                    break
                self._buffer = memoryview(item)  # type: ignore[arg-type]
            piece = self._buffer[:size]
            self._buffer = self._buffer[len(piece) :]
            parts.append(piece)
            size -= len(piece)
            if parts and size > 0 and self._queue.empty():
                break  # return what we have rather than wait, like a socket read
        return b"".join(parts)


class ProducedChunks(_ProducingThread):
    """Runs `produce(sink)` in a thread and yields what it writes to `sink`, `depth` chunks ahead.

    Turns a push-style stage (zstandard's stream_writer, which releases the GIL where its
    stream_reader does not) into an iterator. Iterate to the end, or call `close()`.
    """

    def __init__(self, produce: Callable[[Sink], None], depth: int = DEPTH) -> None:
        super().__init__(depth)
        self._producer = produce
        self._thread.start()

    def _produce(self) -> None:
        self._producer(self)

    def write(self, data: bytes | memoryview) -> int:
        self._put(bytes(data))
        return len(data)

    def __iter__(self) -> Iterator[bytes]:
        try:
            while (item := self._next()) is not _END:
                yield item  # type: ignore[misc]
        finally:
            self.close()
        if self._error is not None:
            raise self._error

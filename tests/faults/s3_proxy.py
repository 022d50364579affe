"""A fault-injecting HTTP proxy on loopback, in front of a real S3 endpoint (moto_server).

Every request is forwarded to the upstream server unchanged, except where a `Fault` matches it:
then the proxy answers 500 with an S3 error body (without forwarding), answers slowly, resets
the connection before any response (after forwarding: the server did the work, the answer is
lost), or sends the status line, headers and part of the body and then breaks the connection.
A fault is transient (the first `times` matching requests) or persistent (`times=None`).

The proxy counts every request by kind and every fault it injected, so a test can prove the
faults really happened (`FaultProxy.seen`, `FaultProxy.injected`, `FaultProxy.records`).
It runs in a thread of the test process; `start_proxy()` is a context manager.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

FaultKind = Literal["error500", "slow", "reset", "reset-mid-body"]
FAULT_KINDS: tuple[FaultKind, ...] = ("error500", "slow", "reset", "reset-mid-body")
# The request kinds a fault can target; the others are only counted.
RequestKind = Literal["create", "part", "complete", "put", "get"]
REQUEST_KINDS: tuple[RequestKind, ...] = ("create", "part", "complete", "put", "get")

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
}
UPSTREAM_TIMEOUT = 30.0
ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    "<Message>We encountered an internal error. Please try again.</Message>"
    "<Key>{key}</Key><RequestId>opskit-fault-proxy</RequestId></Error>"
)


@dataclass
class Fault:
    """Inject `kind` into requests of `request` kind whose object key matches `key_pattern`
    (a regex searched in the key; None: any key), the first `times` of them, or every one
    (`times=None`). `delay` is the seconds a slow answer takes beyond the real one."""

    kind: FaultKind
    request: RequestKind
    times: int | None = 1
    key_pattern: str | None = None
    delay: float = 1.0
    matched: int = 0  # matching requests that were given this fault

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.request not in REQUEST_KINDS:
            raise ValueError(f"unknown request kind {self.request!r}")

    @property
    def persistent(self) -> bool:
        return self.times is None

    def describe(self) -> str:
        how = "every" if self.persistent else f"first {self.times}"
        on = f" of keys ~ {self.key_pattern!r}" if self.key_pattern else ""
        return f"{self.kind} on {how} {self.request}{on}"


@dataclass(frozen=True)
class Record:
    """One request the proxy saw: its kind, method, object key, and the fault given (or None)."""

    kind: str
    method: str
    key: str
    fault: FaultKind | None
    status: int | None  # what the client was sent (None: no status line)


@dataclass
class FaultProxy:
    """The running proxy: its endpoint, its faults, and what it saw."""

    upstream: str
    faults: list[Fault] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    endpoint: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        """Remove every fault and forget what was seen."""
        with self._lock:
            self.faults.clear()
            self.records.clear()

    def forget(self) -> None:
        """Forget what was seen; keep the faults (and what they have matched)."""
        with self._lock:
            self.records.clear()

    @property
    def seen(self) -> Counter[str]:
        """Requests seen, by kind (create, part, complete, put, get, head, list, abort, ...)."""
        with self._lock:
            return Counter(record.kind for record in self.records)

    @property
    def injected(self) -> Counter[tuple[str, str]]:
        """Faults injected, by (request kind, fault kind)."""
        with self._lock:
            return Counter(
                (record.kind, record.fault) for record in self.records if record.fault is not None
            )

    def requests(self, kind: str, key_pattern: str | None = None) -> list[Record]:
        with self._lock:
            return [
                record
                for record in self.records
                if record.kind == kind
                and (key_pattern is None or re.search(key_pattern, record.key))
            ]

    def summary(self) -> str:
        """What was seen and injected, for assertion messages."""
        with self._lock:
            faults = "; ".join(f"{f.describe()}: {f.matched} injected" for f in self.faults)
        return f"seen {dict(self.seen)}; faults: {faults or 'none'}"

    def _choose(self, kind: str, key: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.request != kind:
                    continue
                if fault.key_pattern is not None and not re.search(fault.key_pattern, key):
                    continue
                if fault.times is not None and fault.matched >= fault.times:
                    continue
                fault.matched += 1
                return fault
        return None

    def _record(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)


def classify(method: str, path: str, headers: http.client.HTTPMessage) -> tuple[str, str, str]:
    """Return (request kind, bucket, object key) of an S3 request (path-style addressing).

    Kinds: create, part, complete, put, get (the faultable ones), and copy-part, copy, abort,
    list-parts, list-uploads, list, head, delete, bucket, other.
    """
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    copy = "x-amz-copy-source" in headers
    if not key:
        if method == "GET" and "uploads" in query:
            return "list-uploads", bucket, key
        if method == "GET":
            return "list", bucket, key
        if method == "POST" and "delete" in query:
            return "delete", bucket, key
        return "bucket", bucket, key
    if method == "POST" and "uploads" in query:
        return "create", bucket, key
    if method == "POST" and "uploadId" in query:
        return "complete", bucket, key
    if method == "PUT" and "partNumber" in query and "uploadId" in query:
        return ("copy-part" if copy else "part"), bucket, key
    if method == "PUT" and not query.keys() - {"x-id"}:
        return ("copy" if copy else "put"), bucket, key
    if method == "DELETE" and "uploadId" in query:
        return "abort", bucket, key
    if method == "DELETE":
        return "delete", bucket, key
    if method == "GET" and "uploadId" in query:
        return "list-parts", bucket, key
    if method == "GET" and not query.keys() - {"x-id", "partNumber"}:
        return "get", bucket, key
    if method == "HEAD":
        return "head", bucket, key
    return "other", bucket, key


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and `100 Continue` for botocore's PUTs
    proxy: FaultProxy  # set on the subclass made per proxy

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _handle(self) -> None:
        body = self._read_body()
        kind, _, key = classify(self.command, self.path, self.headers)
        fault = self.proxy._choose(kind, key)
        given = fault.kind if fault is not None else None
        # Recorded before answering: a test may look the moment its client has an answer.
        if given == "error500":
            self.proxy._record(Record(kind, self.command, key, given, 500))
            self._send_error_500(key)
            return
        try:
            status, reason, headers, payload = self._forward(body)
        except OSError as exc:
            self.proxy._record(Record(kind, self.command, key, None, 502))
            self._send_plain(502, f"upstream failed: {exc}".encode())
            return
        self.proxy._record(
            Record(kind, self.command, key, given, None if given == "reset" else status)
        )
        if given is None:
            self._send(status, reason, headers, payload)
        elif given == "slow":
            assert fault is not None
            self._send(status, reason, headers, payload, delay=fault.delay)
        elif given == "reset":
            self._reset()
        else:
            self._send_partial_then_break(status, reason, headers, payload)

    # -- reading the request and asking upstream ---------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        target = urlsplit(self.proxy.upstream)
        connection = http.client.HTTPConnection(
            target.hostname, target.port, timeout=UPSTREAM_TIMEOUT
        )
        try:
            connection.putrequest(
                self.command, self.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            payload = response.read()
            headers = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in HOP_BY_HOP
                and (name.lower() != "content-length" or self.command == "HEAD")
            ]
            return response.status, response.reason, headers, payload
        finally:
            connection.close()

    # -- answering ---------------------------------------------------------------------------

    def _head_bytes(self, status: int, reason: str, headers: list[tuple[str, str]], size: int):
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if self.command != "HEAD":
            lines.append(f"Content-Length: {size}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, status, reason, headers, payload: bytes, delay: float = 0.0) -> None:
        """Relay an answer; with `delay`, half of it before the status line and the rest
        spread over the body (a slow server, then a slow link)."""
        body = b"" if self.command == "HEAD" else payload
        if delay:
            time.sleep(delay / 2 if body else delay)
        self.wfile.write(self._head_bytes(status, reason, headers, len(body)))
        if delay and body:
            slices = 4
            step = -(-len(body) // slices)
            for start in range(0, len(body), step):
                self.wfile.write(body[start : start + step])
                self.wfile.flush()
                time.sleep(delay / 2 / slices)
        else:
            self.wfile.write(body)
        self.wfile.flush()

    def _send_plain(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        headers = [("Content-Type", content_type)]
        self.wfile.write(self._head_bytes(status, "Error", headers, len(body)))
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _send_error_500(self, key: str) -> None:
        body = ERROR_BODY.format(key=escape(key)).encode()
        self._send_plain(500, body, "application/xml")

    def _reset(self) -> None:
        """Close the connection with a TCP RST (SO_LINGER 0), nothing sent."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _send_partial_then_break(self, status, reason, headers, payload: bytes) -> None:
        """Send the status line, the headers (with the full Content-Length) and half of the
        body, then break the connection. An answer without a body (UploadPart, PutObject, HEAD)
        is cut after its status line: its headers are lost. The cut answer is delivered (FIN
        first) before the socket is reset."""
        body = b"" if self.command == "HEAD" else payload
        head = self._head_bytes(status, reason, headers, len(body))
        sent = head + body[: len(body) // 2] if body else head[: head.index(b"\r\n") + 2]
        try:
            self.wfile.write(sent)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(2.0)
            while self.connection.recv(65536):
                pass  # until the client gives up on the connection
        except OSError:
            pass
        self._reset()


@contextmanager
def start_proxy(upstream: str, *faults: Fault) -> Iterator[FaultProxy]:
    """Run a fault-injecting proxy on a free 127.0.0.1 port in front of `upstream` (an http://
    S3 endpoint); yield it, with `faults` installed; stop it afterwards."""
    proxy = FaultProxy(upstream=upstream, faults=list(faults))
    handler = type("FaultHandler", (_Handler,), {"proxy": proxy})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="s3-fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

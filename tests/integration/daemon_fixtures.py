"""Running `opskit daemon` as systemd would (a subprocess, JSON log lines on stdout), reading
its log while it runs, and checking what it left behind on the engine and in a store.

Every wait polls its condition against a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import yaml

from tests.integration.opskit_cli import REPOSITORY, opskit_command, opskit_environment

HELPER_LABEL = "io.opskit.helper"  # opskit.engine.volumes.HELPER_LABEL
LOCK_LABEL = "io.opskit.lock"  # opskit.engine.orphans.LOCK_LABEL
SCRATCH_LABEL = "io.opskit.scratch"  # opskit.engine.orphans.SCRATCH_LABEL
OWNER_LABEL = "io.opskit.owner"  # host:pid:start-ticks
PARTIAL_PREFIX = ".opskit-partial-"  # opskit.storage.local.PARTIAL_PREFIX
POLL_SECONDS = 0.05
SHOWN_LINES = 40  # log lines quoted when a wait fails


def write_config(path: Path, document: dict[str, Any]) -> Path:
    """Write `document` as the YAML config file `path`; return the path."""
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def free_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something true; return that. Fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)


class DaemonProcess:
    """A running `opskit daemon`; its stdout is read line by line in a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            opskit_command(*args),
            cwd=REPOSITORY,
            env=opskit_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.pid = self.process.pid
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self.other_lines: list[str] = []  # stdout lines that are not JSON objects
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            with self._lock:
                if isinstance(record, dict):
                    self._records.append(record)
                elif line.strip():
                    self.other_lines.append(line.rstrip("\n"))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.stderr_lines.append(line.rstrip("\n"))

    # -- the log ---------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every JSON log line so far, in order."""
        with self._lock:
            return list(self._records)

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        """The log lines with `event` == name and every one of `fields`."""
        return [
            record
            for record in self.records()
            if record.get("event") == name
            and all(record.get(key) == value for key, value in fields.items())
        ]

    def wait_for_event(
        self, name: str, count: int = 1, timeout: float = 60, **fields: Any
    ) -> dict[str, Any]:
        """Wait until `count` lines of event `name` (with `fields`) were logged; return the
        last of them. Fail with the log's tail if the daemon exits or the time runs out."""
        shown = f"{count} x {name} {fields or ''}".strip()
        found = self.wait(lambda: len(self.events(name, **fields)) >= count, timeout, shown)
        assert found
        return self.events(name, **fields)[count - 1]

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll `condition` while the daemon runs; return its first true value."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                self._join_readers()
                value = condition()
                if value:
                    return value
                raise AssertionError(
                    f"the daemon exited {self.process.returncode} while waiting for {what}\n"
                    + self.describe()
                )
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}\n{self.describe()}"
                )
            time.sleep(POLL_SECONDS)

    def describe(self) -> str:
        """The tail of the log and all of stderr, for failure messages."""
        tail = [json.dumps(record) for record in self.records()[-SHOWN_LINES:]]
        with self._lock:
            other, stderr = list(self.other_lines), list(self.stderr_lines)
        return (
            "--- log (last lines) ---\n"
            + "\n".join(tail)
            + ("\n--- other stdout ---\n" + "\n".join(other) if other else "")
            + "\n--- stderr ---\n"
            + "\n".join(stderr)
        )

    # -- signals and the end ---------------------------------------------------------------

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM the daemon and wait for it; return its exit code."""
        if self.process.poll() is None:
            self.send(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self._join_readers()
            raise AssertionError(
                f"the daemon did not exit within {timeout:.0f} s (killed)\n{self.describe()}"
            ) from None
        self._join_readers()
        return code

    def kill(self) -> None:
        """Teardown: kill the daemon if it still runs (a failed test)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._join_readers()

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=10)


def start_daemon(config: Path, state_file: Path, *options: str) -> DaemonProcess:
    """Start `opskit daemon --config CONFIG --state-file STATE --log-json OPTIONS`, and wait
    for its `daemon.start` line (its SIGHUP handler is in place from then on)."""
    daemon = DaemonProcess(
        "daemon", "--config", str(config), "--state-file", str(state_file), "--log-json", *options
    )
    daemon.wait_for_event("daemon.start", timeout=60)
    return daemon


# -- what a run left behind ------------------------------------------------------------------


def _owned_by(labels: dict[str, str] | None, pid: int) -> bool:
    owner = (labels or {}).get(OWNER_LABEL, "")
    return owner.split(":")[-2:-1] == [str(pid)]


def leftovers_of(client: docker.DockerClient, pid: int) -> list[str]:
    """Helper and lock containers and scratch volumes that opskit process `pid` made and that
    still exist (other tests' runs, which may go on at the same time, are not counted)."""
    found = []
    for label in (HELPER_LABEL, LOCK_LABEL):
        for summary in client.api.containers(all=True, filters={"label": label}):
            if _owned_by(summary.get("Labels"), pid):
                found.append(f"{label} container {summary['Names']}")
    answer = client.api.volumes(filters={"label": SCRATCH_LABEL}) or {}
    for volume in answer.get("Volumes") or []:
        if _owned_by(volume.get("Labels"), pid):
            found.append(f"scratch volume {volume['Name']}")
    return found


def remove_leftovers_of(client: docker.DockerClient, pid: int) -> None:
    """Teardown after a failed test: remove what `leftovers_of` finds (a killed daemon's)."""
    for label in (HELPER_LABEL, LOCK_LABEL):
        for summary in client.api.containers(all=True, filters={"label": label}):
            if _owned_by(summary.get("Labels"), pid):
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_container(summary["Id"], force=True)
    answer = client.api.volumes(filters={"label": SCRATCH_LABEL}) or {}
    for volume in answer.get("Volumes") or []:
        if _owned_by(volume.get("Labels"), pid):
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_volume(volume["Name"], force=True)


def locks_held_by(client: docker.DockerClient, pid: int) -> list[str]:
    """The `io.opskit.lock` values (what is locked) of lock containers owned by `pid`."""
    return [
        summary["Labels"][LOCK_LABEL]
        for summary in client.api.containers(all=True, filters={"label": LOCK_LABEL})
        if _owned_by(summary.get("Labels"), pid)
    ]


def stored_records(store: Path) -> list[dict[str, Any]]:
    """The metadata documents listed in a local store (hidden files are never listed)."""
    if not store.is_dir():
        return []
    records = []
    for path in sorted(store.glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # removed by a prune between the glob and the read
    return records


def assert_store_is_whole(store: Path) -> list[dict[str, Any]]:
    """Check that a local store holds only whole backups: no hidden (partial) files, and every
    metadata file's archive exists with the recorded size, every archive has its metadata.
    Return the records."""
    names = sorted(os.listdir(store)) if store.is_dir() else []
    if "index" in names:  # the record index: one file, and only copies of listed records
        assert os.listdir(store / "index") == ["records.json"], os.listdir(store / "index")
        names.remove("index")
    hidden = [name for name in names if name.startswith(".")]
    assert not hidden, f"temporary files left in the store: {hidden}"
    records = stored_records(store)
    archives = {record["archive"] for record in records}
    for record in records:
        archive = store / record["archive"]
        assert archive.is_file(), f"{record['id']} is listed but its archive is missing"
        assert archive.stat().st_size == record["size"], f"{record['id']}: archive size differs"
    unexplained = [n for n in names if not n.endswith(".json") and n not in archives]
    assert not unexplained, f"files without metadata in the store: {unexplained}"
    return records


# -- a notification receiver -----------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    body: bytes


@dataclass
class Receiver:
    """What a loopback HTTP receiver got, in order."""

    port: int
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, prefix: str = "") -> list[Received]:
        with self.lock:
            return [request for request in self.requests if request.path.startswith(prefix)]

    def webhook_events(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(request.body) for request in self.received(path)]


@contextlib.contextmanager
def receiving() -> Iterator[Receiver]:
    """Serve an HTTP receiver on 127.0.0.1 in a thread: every GET and POST answers 200 and is
    recorded."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    receiver = Receiver(server.server_address[1])
    server.receiver = receiver  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        with receiver.lock:
            receiver.requests.append(Received(self.command, self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = _record

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass  # no access log in the test output

"""Prometheus metrics of the scheduler's runs: kept in memory, served over HTTP or written to a
node-exporter textfile.

Each `JobMetrics` has its own `CollectorRegistry`, never prometheus_client's global one, so two
daemons in one process (tests) do not share series, and the Python process metrics the global
registry adds are not mixed into ours.

Source series carry the labels `job` and `source` (a volume name or a host path); job series
carry `job`. A gauge that needs a success (last size, last duration) is absent until one
happened, so an alert on it cannot fire from a zero that means "never".
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import ipaddress
import os
import socket
import tempfile
import threading
import time
import typing
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import MetricsHandler
from prometheus_client.registry import Collector

from opskit import errors
from opskit.daemon.report import JobReport
from opskit.log import get_logger
from opskit.untrusted import printable

log = get_logger(__name__)

SOURCE_LABELS = ("job", "source")
JOB_LABELS = ("job",)
# node-exporter runs as its own user: it must be able to read the file whatever our umask is.
TEXTFILE_MODE = 0o644
TEXTFILE_SUFFIX = ".prom"


class JobMetrics:
    """The metrics of every job the daemon ran since it started."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._verified_age = _NewestVerifiedAge()
        registry = self.registry
        self.backup_last_success = Gauge(
            "opskit_backup_last_success_timestamp_seconds",
            "Unix time at which the last successful backup of this source finished.",
            SOURCE_LABELS,
            registry=registry,
        )
        self.backup_last_duration = Gauge(
            "opskit_backup_last_duration_seconds",
            "How long the last successful backup of this source took, in seconds.",
            SOURCE_LABELS,
            registry=registry,
        )
        self.backup_last_size = Gauge(
            "opskit_backup_last_size_bytes",
            "Bytes stored by the last successful backup of this source (the compressed archive).",
            SOURCE_LABELS,
            registry=registry,
        )
        self.backup_failures = Counter(
            "opskit_backup_failures_total",
            "Runs in which this source failed (its backup, or its restore drill).",
            SOURCE_LABELS,
            registry=registry,
        )
        self.restore_drill_last_passed = Gauge(
            "opskit_restore_drill_last_passed",
            "1 if the last restore drill of this source passed, 0 if it failed; absent until a "
            "drill ran.",
            SOURCE_LABELS,
            registry=registry,
        )
        self.job_last_run = Gauge(
            "opskit_job_last_run_timestamp_seconds",
            "Unix time at which the last run of this job finished, whatever its outcome.",
            JOB_LABELS,
            registry=registry,
        )
        self.job_last_success = Gauge(
            "opskit_job_last_success_timestamp_seconds",
            "Unix time at which the last fully successful run of this job finished.",
            JOB_LABELS,
            registry=registry,
        )
        self.job_failures = Counter(
            "opskit_job_failures_total",
            "Runs of this job that failed (any source failed, or the run itself did).",
            JOB_LABELS,
            registry=registry,
        )
        self.job_last_duration = Gauge(
            "opskit_job_last_duration_seconds",
            "How long the last run of this job took, in seconds, whatever its outcome.",
            JOB_LABELS,
            registry=registry,
        )
        registry.register(self._verified_age)

    def record(self, report: JobReport) -> None:
        """Given one finished run of a job, update every series of that job and its sources."""
        job = report.job
        # Touching a counter's labels makes it show as 0, so the first failure is an increase.
        failures = self.job_failures.labels(job)
        if not report.ok:
            failures.inc()
        self.job_last_run.labels(job).set(report.finished_at)
        self.job_last_duration.labels(job).set(max(report.seconds, 0.0))
        if report.ok:
            self.job_last_success.labels(job).set(report.finished_at)
        for source in report.sources:
            labels = (job, source.source)
            source_failures = self.backup_failures.labels(*labels)
            if source.ok:
                self.backup_last_success.labels(*labels).set(report.finished_at)
                self.backup_last_duration.labels(*labels).set(source.seconds)
                self.backup_last_size.labels(*labels).set(source.size)
            else:
                source_failures.inc()
            if source.verified is not None:
                self.restore_drill_last_passed.labels(*labels).set(1 if source.verified else 0)
            if source.newest_verified_at is not None:
                self._verified_age.set(labels, source.newest_verified_at)

    def render(self) -> bytes:
        """Return the metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)

    def write_textfile(self, path: str) -> None:
        """Write the metrics to `path` for node-exporter's textfile collector, atomically: a
        scrape sees the old file or the new one, never half of one (mode 0644).

        Raise `StorageError` if the directory is missing or not writable.
        """
        target = os.path.abspath(path)
        directory = os.path.dirname(target)
        shown = printable(target)
        if not target.endswith(TEXTFILE_SUFFIX):
            log.warning("node-exporter reads only *.prom textfiles", path=shown)
        if not os.path.isdir(directory):
            raise errors.StorageError(
                f"cannot write the metrics textfile {shown}: "
                f"directory {printable(directory)} does not exist"
            )
        data = self.render()
        try:
            _replace_file(target, data, TEXTFILE_MODE)
        except OSError as exc:
            raise errors.StorageError(
                f"cannot write the metrics textfile {shown}: {exc.strerror or exc}"
            ) from exc

    def serve(self, listen: str) -> MetricsServer:
        """Serve the metrics over HTTP at `listen` (`127.0.0.1:9133`, `:9133` for every
        interface, `[::1]:9133`; port 0 picks a free one), in a background thread.

        Raise `UsageError` if `listen` is malformed or the address cannot be bound (port taken).
        """
        host, port = parse_listen(listen)
        handler = MetricsHandler.factory(self.registry)
        try:
            server = _bind_server(host, port, handler)
        except OSError as exc:
            raise errors.UsageError(
                f"cannot serve metrics on {printable(listen)}: {exc.strerror or exc}",
                "choose another address or port for the metrics listener",
            ) from exc
        return MetricsServer(server)


class MetricsServer:
    """A running metrics HTTP server; `port` is the port it is bound to."""

    def __init__(self, server: http.server.ThreadingHTTPServer) -> None:
        self._server = server
        self.port: int = server.server_address[1]
        # A short poll, so close() (daemon stop, config reload) returns at once.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="opskit-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics.serving", address=server.server_address[0], port=self.port)

    def close(self) -> None:
        """Stop serving and release the port. Calling it again does nothing."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


class _NewestVerifiedAge(Collector):
    """opskit_backup_newest_verified_age_seconds, computed at each scrape from the created time
    of the newest backup that passed a drill, so the age grows between runs (an alert on it
    fires even when the daemon stopped running jobs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._created_at: dict[tuple[str, str], float] = {}

    def set(self, labels: tuple[str, str], created_at: float) -> None:
        with self._lock:
            self._created_at[labels] = created_at

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        now = time.time()
        with self._lock:
            known = sorted(self._created_at.items())
        for labels, created_at in known:
            family.add_metric(list(labels), max(now - created_at, 0.0))
        yield family

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "opskit_backup_newest_verified_age_seconds",
            "Seconds since the newest backup of this source that passed a restore drill was "
            "created; absent until one is known.",
            labels=list(SOURCE_LABELS),
        )


def parse_listen(listen: str) -> tuple[str, int]:
    """Given `host:port`, `:port` or `[v6 address]:port`, return (host, port); host "" means
    every interface. Raise `UsageError` if it is none of those."""
    text = listen.strip()
    host, separator, port_text = text.rpartition(":")
    if not separator or not port_text.isdigit() or int(port_text) > 65535:
        raise errors.UsageError(
            f"metrics listen address {printable(listen)!r} is not host:port",
            "e.g. 127.0.0.1:9133, :9133 (every interface) or [::1]:9133",
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise errors.UsageError(
                f"metrics listen address {printable(listen)!r}: {printable(host)!r} is not an "
                "IPv6 address"
            ) from exc
    elif ":" in host:
        raise errors.UsageError(
            f"metrics listen address {printable(listen)!r} is ambiguous",
            "write an IPv6 address in brackets, e.g. [::1]:9133",
        )
    return host, int(port_text)


class _QuietMetricsServer(http.server.ThreadingHTTPServer):
    # A scrape in flight must not keep the daemon from exiting.
    daemon_threads = True


class _DualStackMetricsServer(_QuietMetricsServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        # `:9133` means every interface, IPv4 included: accept v4-mapped connections too.
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _bind_server(host: str, port: int, handler: type) -> http.server.ThreadingHTTPServer:
    """Bind an HTTP server for `handler` at (host, port); raise OSError if that fails."""
    if host == "":
        if socket.has_ipv6:
            try:
                return _DualStackMetricsServer(("::", port), handler)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise
                # No IPv6 on this machine (disabled in the kernel): all of IPv4 then.
        return _QuietMetricsServer(("0.0.0.0", port), handler)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(exc.errno, f"cannot resolve {host}: {exc.strerror}") from exc
    family, _, _, _, address = infos[0]

    class _Server(_QuietMetricsServer):
        address_family = family

    # The whole sockaddr: an IPv6 one keeps its scope id (fe80::1%eth0).
    return _Server(typing.cast(tuple[str, int], address), handler)


def _replace_file(target: str, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file next to `target`, flush it to disk and rename it over
    `target`. prometheus_client's write_to_textfile renames too but neither fsyncs nor sets the
    mode (under UMask=0077 node-exporter could not read it)."""
    directory = os.path.dirname(target)
    # Not *.prom, so the textfile collector never reads a half-written temporary file.
    fd, temporary = tempfile.mkstemp(
        prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable; some filesystems cannot fsync a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

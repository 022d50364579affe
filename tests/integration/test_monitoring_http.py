"""Monitoring over real HTTP on loopback: the metrics endpoint scraped with urllib, and the
Notifier's pings and webhook received by a small http.server in a thread (no mocks)."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

import opskit
from opskit import errors
from opskit.daemon.metrics import JobMetrics
from opskit.daemon.notifications import PING_BODY_LIMIT, Notifier
from opskit.daemon.report import JobReport, SourceReport


def scrape(port: int, host: str = "127.0.0.1") -> tuple[str, dict[tuple[str, tuple], float]]:
    """GET /metrics; return its Content-Type and {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return content_type, samples


def run(job: str, *sources: SourceReport, error: str = "") -> JobReport:
    now = time.time()
    return JobReport(
        job=job, started_at=now - 5, finished_at=now, sources=list(sources), error=error
    )


def ok(source: str = "pgdata") -> SourceReport:
    return SourceReport(
        source, True, backup_id=f"{source}-1", size=2048, seconds=1.5, verified=True
    )


def failed(source: str = "pgdata", reason: str = "helper exited 2") -> SourceReport:
    return SourceReport(source, False, reason=reason)


@contextlib.contextmanager
def serving(metrics: JobMetrics, listen: str = "127.0.0.1:0"):
    server = metrics.serve(listen)
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the metrics endpoint ---------------------------------------------------------------------


def test_serve_answers_a_scrape_with_the_recorded_run():
    metrics = JobMetrics()
    metrics.record(run("nightly", ok("pgdata"), failed("/srv/www")))
    with serving(metrics) as server:
        assert server.port > 0
        content_type, samples = scrape(server.port)
    assert content_type.startswith("text/plain")
    pg = (("job", "nightly"), ("source", "pgdata"))
    www = (("job", "nightly"), ("source", "/srv/www"))
    assert samples[("opskit_backup_last_size_bytes", pg)] == 2048
    assert samples[("opskit_restore_drill_last_passed", pg)] == 1
    assert samples[("opskit_backup_failures_total", www)] == 1
    assert samples[("opskit_job_failures_total", (("job", "nightly"),))] == 1


def test_serve_shows_runs_recorded_after_it_started():
    metrics = JobMetrics()
    with serving(metrics) as server:
        _, before = scrape(server.port)
        metrics.record(run("later", ok()))
        _, after = scrape(server.port)
    key = ("opskit_job_last_run_timestamp_seconds", (("job", "later"),))
    assert key not in before
    assert key in after


def test_serve_on_every_interface_answers_on_ipv4_loopback():
    metrics = JobMetrics()
    metrics.record(run("nightly", ok()))
    with serving(metrics, ":0") as server:
        _, samples = scrape(server.port, "127.0.0.1")
    assert ("opskit_job_last_run_timestamp_seconds", (("job", "nightly"),)) in samples


def test_serve_on_ipv6_loopback():
    metrics = JobMetrics()
    metrics.record(run("nightly", ok()))
    try:
        server = metrics.serve("[::1]:0")
    except errors.UsageError as exc:
        pytest.fail(f"this machine has no IPv6 loopback (::1) to test on: {exc}", pytrace=False)
    try:
        _, samples = scrape(server.port, "[::1]")
    finally:
        server.close()
    assert ("opskit_job_last_run_timestamp_seconds", (("job", "nightly"),)) in samples


def test_serve_on_a_taken_port_is_a_one_line_usage_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(errors.UsageError) as caught:
            JobMetrics().serve(f"127.0.0.1:{port}")
    message = str(caught.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message
    assert "in use" in message


def test_close_releases_the_port():
    metrics = JobMetrics()
    server = metrics.serve("127.0.0.1:0")
    port = server.port
    server.close()
    server.close()  # twice is harmless
    again = metrics.serve(f"127.0.0.1:{port}")
    again.close()


# --- notifications ----------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on loopback that records every request. Paths starting /status/500
    answer 500; /slow answers after 3 s."""

    port: int
    requests: list[Received] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    record: list[Received] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                record.append(Received(self.command, self.path, dict(self.headers), body))
            if self.path.startswith("/slow"):
                time.sleep(3)
            status = 500 if self.path.startswith("/status/500") else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_GET = do_POST = do_HEAD = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(server.server_address[1], record)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_posts_json_on_failure(receiver):
    notifier = Notifier(receiver.url("/hook"))
    notifier.job_finished(run("nightly", ok(), failed("/srv/www", "tar failed")), ping_url=None)
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"opskit/{opskit.__version__}"
    payload = request.json()
    assert payload["event"] == "failure"
    assert payload["job"] == "nightly"
    assert payload["host"] == socket.gethostname()
    assert payload["outcome"] == "failure"
    assert "\n" not in payload["summary"]
    assert "/srv/www: tar failed" in payload["summary"]
    assert payload["report"]["job"] == "nightly"
    assert [source["source"] for source in payload["report"]["sources"]] == ["pgdata", "/srv/www"]


def test_webhook_on_every_failure_and_the_first_recovery_only(receiver):
    notifier = Notifier(receiver.url("/hook"))
    notifier.job_finished(run("nightly", ok()), ping_url=None)  # first success: nothing
    notifier.job_finished(run("nightly", failed()), ping_url=None)
    notifier.job_finished(run("nightly", error="store unreachable"), ping_url=None)
    notifier.job_finished(run("nightly", ok()), ping_url=None)  # recovery
    notifier.job_finished(run("nightly", ok()), ping_url=None)  # repeated success: nothing
    events = [request.json()["event"] for request in receiver.requests]
    assert events == ["failure", "failure", "recovery"]
    assert receiver.requests[-1].json()["outcome"] == "success"


def test_webhook_remembers_each_job_separately(receiver):
    notifier = Notifier(receiver.url("/hook"))
    notifier.job_finished(run("a", failed()), ping_url=None)
    notifier.job_finished(run("b", ok()), ping_url=None)  # b never failed: no recovery
    notifier.job_finished(run("a", ok()), ping_url=None)
    sent = [(request.json()["job"], request.json()["event"]) for request in receiver.requests]
    assert sent == [("a", "failure"), ("a", "recovery")]


def test_webhook_notify_on_failure_only_sends_no_recovery(receiver):
    notifier = Notifier(receiver.url("/hook"), notify_on=("failure",))
    notifier.job_finished(run("nightly", failed()), ping_url=None)
    notifier.job_finished(run("nightly", ok()), ping_url=None)
    assert [request.json()["event"] for request in receiver.requests] == ["failure"]


def test_ping_start_success_and_fail(receiver):
    notifier = Notifier(None)
    ping = receiver.url("/ping/0e3f")
    notifier.job_started("nightly", ping)
    notifier.job_finished(run("nightly", ok()), ping)
    notifier.job_finished(run("nightly", failed("pgdata", "disk full")), ping)
    start, success, fail = receiver.requests
    assert (start.method, start.path) == ("GET", "/ping/0e3f/start")
    assert (success.method, success.path) == ("POST", "/ping/0e3f")
    assert (fail.method, fail.path) == ("POST", "/ping/0e3f/fail")
    for request in (start, success, fail):
        assert request.headers["User-Agent"] == f"opskit/{opskit.__version__}"
    assert success.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert success.body.decode().startswith("job nightly succeeded on ")
    assert "pgdata: FAILED: disk full" in fail.body.decode()


def test_ping_url_with_a_trailing_slash(receiver):
    notifier = Notifier(None)
    ping = receiver.url("/ping/0e3f/")
    notifier.job_started("nightly", ping)
    notifier.job_finished(run("nightly", failed()), ping)
    assert receiver.paths() == ["/ping/0e3f/start", "/ping/0e3f/fail"]


def test_ping_body_stays_under_10_kb(receiver):
    sources = [failed(f"volume-{index}", "x" * 2000) for index in range(200)]
    Notifier(None).job_finished(run("big", *sources), receiver.url("/ping/big"))
    [request] = receiver.requests
    assert 0 < len(request.body) <= PING_BODY_LIMIT
    assert request.body.decode().startswith("job big failed on ")


def test_unreachable_receiver_does_not_raise_and_logs_a_masked_url():
    port = free_port()
    webhook = f"http://user:hunter2@127.0.0.1:{port}/hook/SECRETPATH?token=SECRETQUERY"
    notifier = Notifier(webhook, timeout_seconds=2)
    with structlog.testing.capture_logs() as logs:
        notifier.job_started("nightly", f"http://127.0.0.1:{port}/ping/SECRETPING")
        notifier.job_finished(run("nightly", failed()), f"http://127.0.0.1:{port}/ping/SECRETPING")
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 3  # /start, /fail and the webhook
    shown = repr(logs)
    for secret in ("hunter2", "user", "SECRETPATH", "SECRETQUERY", "SECRETPING"):
        assert secret not in shown
    assert all(entry["url"] == f"http://127.0.0.1:{port}/..." for entry in warnings)


def test_unresolvable_host_does_not_raise():
    notifier = Notifier("http://opskit-no-such-host.invalid/hook", timeout_seconds=2)
    with structlog.testing.capture_logs() as logs:
        notifier.job_finished(run("nightly", failed()), ping_url=None)
    assert [entry["log_level"] for entry in logs] == ["warning"]


def test_error_status_does_not_raise_and_is_logged(receiver):
    notifier = Notifier(receiver.url("/status/500/hook"))
    with structlog.testing.capture_logs() as logs:
        notifier.job_finished(run("nightly", failed()), ping_url=receiver.url("/status/500/p"))
    assert receiver.paths() == ["/status/500/p/fail", "/status/500/hook"]
    assert [entry.get("status") for entry in logs if entry["log_level"] == "warning"] == [500, 500]


def test_slow_receiver_times_out_without_raising(receiver):
    notifier = Notifier(None, timeout_seconds=0.5)
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        notifier.job_started("nightly", receiver.url("/slow"))
    assert time.monotonic() - started < 2.5
    assert [entry["log_level"] for entry in logs] == ["warning"]

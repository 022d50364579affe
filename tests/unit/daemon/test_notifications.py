"""The pure parts of notifications: ping URL joining, URL masking, the one-line summary, and
the Notifier's refusal of a bad configuration. The network parts are in
tests/integration/test_monitoring_http.py."""

from __future__ import annotations

import pytest
import structlog

from opskit import errors
from opskit.daemon.notifications import Notifier, join_ping_url, mask_url, summary
from opskit.daemon.report import JobReport, SourceReport


@pytest.mark.parametrize(
    ("ping_url", "expected"),
    [
        ("https://hc-ping.com/abc", "https://hc-ping.com/abc/fail"),
        ("https://hc-ping.com/abc/", "https://hc-ping.com/abc/fail"),
        ("https://hc-ping.com/abc//", "https://hc-ping.com/abc/fail"),
        (
            "https://hc.example/ping/key/slug?create=1",
            "https://hc.example/ping/key/slug/fail?create=1",
        ),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/fail"),
    ],
)
def test_join_ping_url_appends_one_segment(ping_url, expected):
    assert join_ping_url(ping_url, "fail") == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://user:secret@hooks.example.com/services/T0/B0/XYZ?token=abc#x",
            "https://hooks.example.com/...",
        ),
        ("https://hc-ping.com/0e3f-uuid/fail", "https://hc-ping.com/..."),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:9/hook", "http://[::1]:9/..."),
        ("http://example.com/?q=1", "http://example.com/..."),
    ],
)
def test_mask_url_keeps_only_scheme_host_and_port(url, expected):
    assert mask_url(url) == expected


def test_mask_url_of_garbage_does_not_raise():
    assert mask_url("http://[not-closed/x") == "<unparsable URL>"


def test_summary_of_a_success_is_one_line_with_counts():
    report = JobReport(
        job="nightly",
        started_at=100.0,
        finished_at=142.0,
        sources=[SourceReport("pgdata", True, size=3 << 20), SourceReport("/srv/www", True)],
    )
    text = summary(report, "db1")
    assert text == "job nightly succeeded on db1: 2 sources, 3.0 MiB stored, in 42 s"


def test_summary_of_a_failure_names_the_first_failed_source_and_the_run_error():
    report = JobReport(
        job="nightly",
        started_at=100.0,
        finished_at=101.0,
        sources=[
            SourceReport("pgdata", True),
            SourceReport("/srv/www", False, reason="tar: file changed\nas we read it\x1b[2J"),
            SourceReport("cache", False, reason="other"),
        ],
        error="prune failed",
    )
    text = summary(report, "db1")
    assert "\n" not in text and "\x1b" not in text
    assert text.startswith("job nightly failed on db1 after 1 s: prune failed; 2 of 3 sources")
    assert "/srv/www: tar: file changed as we read it\\x1b[2J" in text


def test_summary_of_a_failure_without_sources():
    report = JobReport(job="offsite", started_at=0.0, finished_at=5.0, error="store unreachable")
    assert summary(report, "h") == "job offsite failed on h after 5 s: store unreachable"


def test_notifier_rejects_an_unknown_event():
    with pytest.raises(errors.ConfigError) as caught:
        Notifier(None, notify_on=("failure", "success"))
    assert "'success'" in str(caught.value)


def test_notifier_rejects_a_non_http_webhook_without_showing_it():
    with pytest.raises(errors.ConfigError) as caught:
        Notifier("file:///etc/shadow")
    assert "shadow" not in str(caught.value)


def test_non_http_ping_url_is_not_sent_and_warned():
    notifier = Notifier(None)
    with structlog.testing.capture_logs() as logs:
        notifier.job_started("nightly", "file:///etc/passwd")
    assert [entry["log_level"] for entry in logs] == ["warning"]
    assert "passwd" not in repr(logs)

"""JobMetrics: what one run's report makes of each series, read back through Prometheus' own
parser, and the node-exporter textfile (atomic, 0644, one-line errors)."""

from __future__ import annotations

import os
import stat
import time

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from opskit import errors
from opskit.daemon.metrics import JobMetrics, parse_listen
from opskit.daemon.report import JobReport, SourceReport

EXPECTED_FAMILIES = {
    # family name (the parser strips a counter's _total) -> type
    "opskit_backup_last_success_timestamp_seconds": "gauge",
    "opskit_backup_last_duration_seconds": "gauge",
    "opskit_backup_last_size_bytes": "gauge",
    "opskit_backup_failures": "counter",
    "opskit_restore_drill_last_passed": "gauge",
    "opskit_backup_newest_verified_age_seconds": "gauge",
    "opskit_job_last_run_timestamp_seconds": "gauge",
    "opskit_job_last_success_timestamp_seconds": "gauge",
    "opskit_job_failures": "counter",
    "opskit_job_last_duration_seconds": "gauge",
}


def parsed(metrics: JobMetrics) -> dict[str, object]:
    return {
        family.name: family for family in text_string_to_metric_families(metrics.render().decode())
    }


def value(metrics: JobMetrics, sample_name: str, **labels: str) -> float | None:
    """The value of the sample `sample_name` with exactly `labels`, or None if absent."""
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == sample_name and sample.labels == labels:
                return sample.value
    return None


def report(job: str = "nightly", *sources: SourceReport, error: str = "", seconds: float = 12.0):
    finished = 1_800_000_000.0
    return JobReport(
        job=job,
        started_at=finished - seconds,
        finished_at=finished,
        sources=list(sources),
        error=error,
    )


def good(source: str = "pgdata", **fields) -> SourceReport:
    values = {"backup_id": f"{source}-1", "size": 4096, "seconds": 3.5} | fields
    return SourceReport(source=source, ok=True, **values)


def bad(source: str = "pgdata", **fields) -> SourceReport:
    return SourceReport(source=source, ok=False, reason="helper failed", **fields)


def test_render_exposes_every_family_with_type_and_help():
    metrics = JobMetrics()
    metrics.record(report("nightly", good(verified=True, newest_verified_at=time.time() - 60)))
    families = parsed(metrics)
    for name, kind in EXPECTED_FAMILIES.items():
        assert name in families, name
        assert families[name].type == kind, name
        assert len(families[name].documentation) > 20, name


def test_record_success_sets_source_and_job_series():
    metrics = JobMetrics()
    metrics.record(report("nightly", good("pgdata", size=123_456, seconds=7.25), seconds=9.0))
    labels = {"job": "nightly", "source": "pgdata"}
    assert value(metrics, "opskit_backup_last_success_timestamp_seconds", **labels) == 1.8e9
    assert value(metrics, "opskit_backup_last_duration_seconds", **labels) == 7.25
    assert value(metrics, "opskit_backup_last_size_bytes", **labels) == 123_456
    assert value(metrics, "opskit_backup_failures_total", **labels) == 0
    assert value(metrics, "opskit_job_last_run_timestamp_seconds", job="nightly") == 1.8e9
    assert value(metrics, "opskit_job_last_success_timestamp_seconds", job="nightly") == 1.8e9
    assert value(metrics, "opskit_job_last_duration_seconds", job="nightly") == 9.0
    assert value(metrics, "opskit_job_failures_total", job="nightly") == 0


def test_record_failure_counts_and_keeps_the_last_success():
    metrics = JobMetrics()
    metrics.record(report("nightly", good("pgdata", size=100)))
    later = report("nightly", bad("pgdata"), good("/srv/www", size=5))
    later.started_at += 86_400
    later.finished_at += 86_400
    metrics.record(later)
    metrics.record(later)
    pg = {"job": "nightly", "source": "pgdata"}
    www = {"job": "nightly", "source": "/srv/www"}
    assert value(metrics, "opskit_backup_failures_total", **pg) == 2
    assert value(metrics, "opskit_backup_failures_total", **www) == 0
    assert value(metrics, "opskit_backup_last_success_timestamp_seconds", **pg) == 1.8e9
    assert value(metrics, "opskit_backup_last_size_bytes", **pg) == 100
    assert value(metrics, "opskit_backup_last_size_bytes", **www) == 5
    assert value(metrics, "opskit_job_failures_total", job="nightly") == 2
    assert value(metrics, "opskit_job_last_run_timestamp_seconds", job="nightly") == 1.8e9 + 86_400
    assert value(metrics, "opskit_job_last_success_timestamp_seconds", job="nightly") == 1.8e9


def test_record_run_error_without_sources_is_a_job_failure():
    metrics = JobMetrics()
    metrics.record(report("offsite", error="the store is unreachable"))
    assert value(metrics, "opskit_job_failures_total", job="offsite") == 1
    assert value(metrics, "opskit_job_last_run_timestamp_seconds", job="offsite") == 1.8e9
    assert value(metrics, "opskit_job_last_success_timestamp_seconds", job="offsite") is None


def test_record_run_error_with_good_sources_is_a_job_failure_only():
    metrics = JobMetrics()
    metrics.record(report("nightly", good("pgdata"), error="prune failed"))
    assert value(metrics, "opskit_job_failures_total", job="nightly") == 1
    assert value(metrics, "opskit_backup_failures_total", job="nightly", source="pgdata") == 0


def test_success_gauges_absent_until_a_success():
    metrics = JobMetrics()
    metrics.record(report("nightly", bad("pgdata")))
    labels = {"job": "nightly", "source": "pgdata"}
    assert value(metrics, "opskit_backup_last_success_timestamp_seconds", **labels) is None
    assert value(metrics, "opskit_backup_last_size_bytes", **labels) is None
    assert value(metrics, "opskit_backup_failures_total", **labels) == 1


def test_restore_drill_gauge_absent_until_a_drill_ran():
    metrics = JobMetrics()
    labels = {"job": "nightly", "source": "pgdata"}
    metrics.record(report("nightly", good(verified=None)))
    assert value(metrics, "opskit_restore_drill_last_passed", **labels) is None
    metrics.record(report("nightly", good(verified=True)))
    assert value(metrics, "opskit_restore_drill_last_passed", **labels) == 1
    metrics.record(report("nightly", bad(verified=False)))
    assert value(metrics, "opskit_restore_drill_last_passed", **labels) == 0
    # A run without a drill leaves the last drill's outcome in place.
    metrics.record(report("nightly", good(verified=None)))
    assert value(metrics, "opskit_restore_drill_last_passed", **labels) == 0


def test_newest_verified_age_is_computed_at_each_scrape():
    metrics = JobMetrics()
    labels = {"job": "nightly", "source": "pgdata"}
    metrics.record(report("nightly", good()))
    assert value(metrics, "opskit_backup_newest_verified_age_seconds", **labels) is None
    created = time.time() - 3600
    metrics.record(report("nightly", good(newest_verified_at=created)))
    first = value(metrics, "opskit_backup_newest_verified_age_seconds", **labels)
    assert 3600 <= first < 3660
    time.sleep(0.05)
    second = value(metrics, "opskit_backup_newest_verified_age_seconds", **labels)
    assert second > first
    # A later run that learned nothing new keeps the known age growing, never hides it.
    metrics.record(report("nightly", bad(newest_verified_at=None)))
    third = value(metrics, "opskit_backup_newest_verified_age_seconds", **labels)
    assert third >= second


def test_label_values_survive_quotes_and_backslashes():
    metrics = JobMetrics()
    source = '/srv/odd "name"\\dir'
    metrics.record(report("nightly", good(source)))
    assert value(metrics, "opskit_backup_last_size_bytes", job="nightly", source=source) == 4096


def test_each_instance_has_its_own_registry():
    first, second = JobMetrics(), JobMetrics()
    first.record(report("only-in-first", good()))
    assert value(second, "opskit_job_last_run_timestamp_seconds", job="only-in-first") is None
    assert first.registry is not REGISTRY
    global_names = {family.name for family in REGISTRY.collect()}
    assert not any(name.startswith("opskit_") for name in global_names)


def test_write_textfile_matches_render_with_mode_0644(tmp_path):
    metrics = JobMetrics()
    metrics.record(report("nightly", good()))
    path = tmp_path / "opskit.prom"
    old_umask = os.umask(0o077)
    try:
        metrics.write_textfile(str(path))
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == metrics.render()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [entry.name for entry in tmp_path.iterdir()] == ["opskit.prom"]


def test_write_textfile_replaces_atomically(tmp_path):
    """A reader that opened the old file keeps reading the old, whole file: the new one is a
    new inode renamed over it, never the old one truncated and rewritten."""
    metrics = JobMetrics()
    path = tmp_path / "opskit.prom"
    metrics.record(report("first", good()))
    metrics.write_textfile(str(path))
    old_inode = path.stat().st_ino
    with open(path, "rb") as reader:
        metrics.record(report("second", good()))
        metrics.write_textfile(str(path))
        old_content = reader.read()
    assert b'job="second"' not in old_content
    assert b'job="first"' in old_content
    assert b'job="second"' in path.read_bytes()
    assert path.stat().st_ino != old_inode
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["opskit.prom"]


def test_write_textfile_missing_directory_is_a_storage_error(tmp_path):
    path = tmp_path / "no-such-dir" / "opskit.prom"
    with pytest.raises(errors.StorageError) as caught:
        JobMetrics().write_textfile(str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert "does not exist" in message
    assert str(tmp_path / "no-such-dir") in message


def test_write_textfile_unwritable_directory_is_a_storage_error():
    # /proc accepts no new files, not even from root (the tests run as root in the container).
    with pytest.raises(errors.StorageError) as caught:
        JobMetrics().write_textfile("/proc/opskit-test.prom")
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("cannot write the metrics textfile /proc/opskit-test.prom")


def test_write_textfile_failed_rename_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "opskit.prom"
    target.mkdir()  # a directory where the file should go: the rename fails
    (target / "keep").write_text("x")
    with pytest.raises(errors.StorageError):
        JobMetrics().write_textfile(str(target))
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["opskit.prom"]
    assert (target / "keep").read_text() == "x"


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9133", ("127.0.0.1", 9133)),
        (":9133", ("", 9133)),
        ("[::1]:9133", ("::1", 9133)),
        ("[::]:0", ("::", 0)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_parse_listen_accepts(listen, expected):
    assert parse_listen(listen) == expected


@pytest.mark.parametrize(
    "listen", ["9133", "127.0.0.1", "host:port", ":70000", "::1:9133", "[x]:1"]
)
def test_parse_listen_rejects_with_one_line(listen):
    with pytest.raises(errors.UsageError) as caught:
        parse_listen(listen)
    assert "\n" not in str(caught.value)


def test_serve_rejects_a_malformed_address():
    with pytest.raises(errors.UsageError):
        JobMetrics().serve("no-port-here")

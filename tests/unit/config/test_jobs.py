"""Job models: sources, verify forms, retention as a prune policy, retries, names."""

from __future__ import annotations

import pydantic
import pytest

from opskit.archive import pipeline
from opskit.config.jobs import Job, JobVerify, Retention, Retry, VerifyCheck
from opskit.repository.retention import Duration, Policy


def _job(**fields) -> Job:
    base = {"name": "nightly-db", "volumes": ["pgdata"], "target": "offsite",
            "schedule": "daily at 02:30"}  # fmt: skip
    return Job.model_validate({**base, **fields})


def _messages(exc: pytest.ExceptionInfo[pydantic.ValidationError]) -> str:
    return " | ".join(error["msg"] for error in exc.value.errors())


def test_a_job_gets_the_documented_defaults():
    job = _job()

    assert job.compress == "zstd"
    assert job.stop_containers is False
    assert job.verify is False
    assert job.retention is None
    assert job.tags == []
    assert job.labels == {}
    assert job.jitter_seconds == 0
    assert job.wait_seconds == 0
    assert job.ping_url is None
    assert job.retry == Retry(attempts=3, backoff_seconds=60, max_backoff_seconds=3600)
    assert job.parsed_schedule().at == "02:30"


def test_compress_takes_the_names_the_pipeline_accepts():
    for name in pipeline.COMPRESSIONS:
        assert _job(compress=name).compress == name
    with pytest.raises(pydantic.ValidationError):
        _job(compress="xz")


@pytest.mark.parametrize(
    "sources",
    [{"volumes": ["a"]}, {"volumes": [], "project": "shop"}, {"volumes": [], "all": True}],
)
def test_one_kind_of_source_is_accepted(sources):
    assert _job(**sources)


def test_a_job_without_a_source_is_refused():
    with pytest.raises(pydantic.ValidationError) as raised:
        _job(volumes=[])

    assert "give volumes, project or all: true" in _messages(raised)


def test_a_job_with_two_kinds_of_source_is_refused():
    with pytest.raises(pydantic.ValidationError) as raised:
        _job(project="shop", all=True)

    assert "give only one of volumes, project and all (got volumes and project and all)" in (
        _messages(raised)
    )


def test_labels_need_all():
    with pytest.raises(pydantic.ValidationError) as raised:
        _job(labels={"tier": "db"})
    assert "need all: true" in _messages(raised)

    assert _job(volumes=[], all=True, labels={"tier": "db"}).labels == {"tier": "db"}


@pytest.mark.parametrize("volume", ["./data", "data/x", "~/data", "-data", ".hidden", "/"])
def test_a_volume_is_a_name_or_an_absolute_path(volume):
    with pytest.raises(pydantic.ValidationError):
        _job(volumes=[volume])


def test_volumes_take_names_and_absolute_paths():
    assert _job(volumes=["pgdata", "app_uploads.v2", "/srv/app/config"]).volumes[2] == (
        "/srv/app/config"
    )


def test_a_volume_listed_twice_is_refused():
    with pytest.raises(pydantic.ValidationError) as raised:
        _job(volumes=["a", "b", "a"])
    assert "listed more than once: a" in _messages(raised)


@pytest.mark.parametrize("name", ["nightly db", "-x", ".x", "a/b", "x@y", "", "ü"])
def test_a_job_name_is_a_unit_name(name):
    with pytest.raises(pydantic.ValidationError):
        _job(name=name)


@pytest.mark.parametrize("project", ["Shop", "my shop", "-shop"])
def test_a_project_is_a_compose_project_name(project):
    with pytest.raises(pydantic.ValidationError):
        _job(volumes=[], project=project)


def test_an_unreadable_schedule_is_refused_at_validation():
    with pytest.raises(pydantic.ValidationError) as raised:
        _job(schedule="at noon")
    assert "unreadable schedule 'at noon'" in _messages(raised)


def test_verify_true_is_a_drill_without_a_check():
    job = _job(verify=True)

    assert job.verifies is True
    assert job.verify_check is None


def test_verify_false_runs_no_drill():
    job = _job(verify=False)

    assert job.verifies is False
    assert job.verify_check is None


def test_verify_as_a_mapping_with_a_check():
    job = _job(verify={"check": {"image": "postgres:16", "cmd": "pg_isready", "user": "999"}})

    assert job.verifies is True
    assert isinstance(job.verify, JobVerify)
    assert job.verify_check == VerifyCheck(
        image="postgres:16", cmd="pg_isready", user="999", timeout_seconds=600
    )


def test_verify_as_an_empty_mapping_is_a_drill_without_a_check():
    job = _job(verify={})

    assert job.verifies is True
    assert job.verify_check is None


def test_a_check_needs_image_and_cmd():
    with pytest.raises(pydantic.ValidationError) as raised:
        _job(verify={"check": {"image": "postgres:16"}})

    locations = [error["loc"] for error in raised.value.errors()]
    assert locations == [("verify", "settings", "check", "cmd")]


def test_retention_becomes_the_prune_policy():
    kept = Retention(keep_last=3, keep_daily=7, keep_within="1y2m", keep_tags=["release"])

    policy = kept.policy(["pre-upgrade"])

    assert policy == Policy(
        last=3,
        daily=7,
        within=Duration(years=1, months=2),
        tags=("release",),
        protected_tags=("pre-upgrade",),
    )


def test_an_empty_retention_is_a_config_error():
    with pytest.raises(pydantic.ValidationError) as raised:
        Retention()

    assert (
        "retention keeps nothing; set keep_last or another rule, or remove retention"
        in _messages(raised)
    )


@pytest.mark.parametrize("within", ["30", "1x", "2d1y", "0d", ""])
def test_keep_within_must_be_a_restic_duration(within):
    with pytest.raises(pydantic.ValidationError) as raised:
        Retention(keep_within=within)

    assert "duration" in _messages(raised)


def test_retention_counts_are_not_negative():
    with pytest.raises(pydantic.ValidationError):
        Retention(keep_daily=-1)


def test_keep_within_alone_is_a_rule():
    assert Retention(keep_within="30d").policy(()).within == Duration(days=30)


@pytest.mark.parametrize(
    "retry",
    [
        {"attempts": -1},
        {"backoff_seconds": 0},
        {"max_backoff_seconds": 0},
        {"backoff_seconds": 600, "max_backoff_seconds": 60},
    ],
)
def test_retry_settings_are_checked(retry):
    with pytest.raises(pydantic.ValidationError):
        Retry.model_validate(retry)


def test_no_retries_is_allowed():
    assert Retry(attempts=0).attempts == 0


@pytest.mark.parametrize("url", ["hc-ping.com/uuid", "ftp://hc-ping.com/x", "https://"])
def test_a_ping_url_is_an_http_url(url):
    with pytest.raises(pydantic.ValidationError):
        _job(ping_url=url)


@pytest.mark.parametrize("field", ["jitter_seconds", "wait_seconds"])
def test_waits_are_not_negative(field):
    with pytest.raises(pydantic.ValidationError):
        _job(**{field: -1})


def test_unknown_keys_in_a_job_are_refused():
    with pytest.raises(pydantic.ValidationError) as raised:
        _job(shedule="hourly")

    assert raised.value.errors()[0]["type"] == "extra_forbidden"

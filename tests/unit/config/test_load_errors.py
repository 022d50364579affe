"""Config errors in the file's terms: key paths like jobs[0].target, every error at once."""

from __future__ import annotations

import pytest

from opskit import errors
from opskit.config.load import load_config_file, parse_config

TARGETS = "targets:\n  offsite:\n    url: s3://acme-backups/prod\n  local:\n    url: /b\n"


def _job(**fields: str) -> str:
    values = {"name": "nightly-db", "volumes": "[pgdata]", "target": "offsite",
              "schedule": "daily at 02:30", **fields}  # fmt: skip
    lines = [f"    {key}: {value}" for key, value in values.items() if value is not None]
    return "  - " + "\n".join(lines).lstrip() + "\n"


def _config_error(text: str, source: str = "opskit.yaml") -> str:
    with pytest.raises(errors.ConfigError) as raised:
        parse_config(text, source=source)
    assert raised.value.exit_code == 2
    message = str(raised.value)
    assert "\n" not in message, "the error must fit on one line"
    return message


def test_a_valid_job_config_loads():
    config = parse_config(TARGETS + "jobs:\n" + _job() + _job(name="files", volumes="[/srv/x]"))

    assert [job.name for job in config.jobs] == ["nightly-db", "files"]
    assert config.resolve_target(config.jobs[0].target).url == "s3://acme-backups/prod"


def test_an_unknown_key_is_named_with_a_suggestion():
    message = _config_error(TARGETS + "jobs:\n" + _job(shedule="hourly"))

    assert "at 'jobs[0].shedule': unknown key 'shedule' (did you mean 'schedule'?)" in message
    assert "Extra inputs" not in message


def test_an_unknown_key_without_a_near_name_gets_no_suggestion():
    message = _config_error("zzz: 1\n")

    assert "at 'zzz': unknown key 'zzz'" in message
    assert "did you mean" not in message


def test_an_unknown_target_names_the_known_targets():
    message = _config_error(TARGETS + "jobs:\n" + _job(target="ofsite"))

    assert "at 'jobs[0].target': unknown target 'ofsite' (configured targets: local, offsite)" in (
        message
    )


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("./backups", "unknown relative path './backups'"),
        ("gs://bucket/x", "unknown storage scheme"),
        ("s3:///prefix", "'s3:///prefix' names no bucket"),
    ],
)
def test_a_target_is_a_name_an_absolute_path_or_a_url(target, problem):
    message = _config_error(TARGETS + "jobs:\n" + _job(target=f"'{target}'"))

    assert f"at 'jobs[0].target': {problem}" in message


@pytest.mark.parametrize("target", ["/var/backups/opskit", "s3://other-bucket/x", "file:///b"])
def test_locations_need_no_configured_target(target):
    assert parse_config("jobs:\n" + _job(target=target)).jobs[0].target == target


def test_an_unknown_target_without_targets_says_none_are_configured():
    message = _config_error("jobs:\n" + _job())

    assert "unknown target 'offsite' (no targets are configured)" in message


def test_duplicate_job_names_name_both_places():
    message = _config_error(TARGETS + "jobs:\n" + _job() + _job(volumes="[other]") + _job())

    assert "at 'jobs[1].name': job name 'nightly-db' is already used by jobs[0]" in message
    assert "at 'jobs[2].name': job name 'nightly-db' is already used by jobs[0]" in message


def test_an_unreadable_schedule_is_named_with_the_accepted_forms():
    message = _config_error(TARGETS + "jobs:\n" + _job(schedule="'at noon'"))

    assert "at 'jobs[0].schedule': unreadable schedule 'at noon' (write one of: " in message
    assert "daily at HH:MM" in message


def test_union_member_names_stay_out_of_the_key_path():
    message = _config_error(TARGETS + "jobs:\n" + _job(verify="{check: {image: postgres:16}}"))

    assert "at 'jobs[0].verify.check.cmd': required, but missing" in message
    assert "settings" not in message
    assert "bool" not in message


def test_a_verify_that_is_neither_a_flag_nor_a_mapping_gives_one_error():
    message = _config_error(TARGETS + "jobs:\n" + _job(verify="maybe"))

    assert message.count("at 'jobs[0].verify'") == 1


def test_every_error_is_reported_at_once_with_its_key_path():
    text = (
        "bogus: 1\n"
        "targets:\n  offsite:\n    url: s3://b/p\n    regoin: eu-west-1\n"
        "jobs:\n"
        + _job(target="nowhere", schedule="sometimes", compress="xz", retention="{}")
        + _job(volumes="[other]")
        + "metrics:\n  listen: nope\n"
        + "notifications:\n  on: [failure, always]\n"
    )

    message = _config_error(text, source="/etc/opskit/opskit.yaml")

    assert message.startswith("config /etc/opskit/opskit.yaml: ")
    for expected in (
        "at 'bogus': unknown key 'bogus'",
        "at 'targets.offsite.regoin': unknown key 'regoin' (did you mean 'region'?)",
        "at 'jobs[0].schedule': unreadable schedule 'sometimes'",
        "at 'jobs[0].compress': Input should be 'zstd', 'gzip' or 'none', not 'xz'",
        "at 'jobs[0].retention': retention keeps nothing; set keep_last or another rule",
        "at 'metrics.listen': 'nope' is not HOST:PORT",
        "at 'notifications.on[1]': Input should be 'failure' or 'recovery', not 'always'",
        # found from the raw file although other fields failed
        "at 'jobs[0].target': unknown target 'nowhere' (configured targets: offsite)",
        "at 'jobs[1].name': job name 'nightly-db' is already used by jobs[0]",
    ):
        assert expected in message, f"{expected!r} missing from {message!r}"


def test_a_missing_required_job_key_is_named():
    message = _config_error(TARGETS + "jobs:\n" + _job(target=None, schedule=None))

    assert "at 'jobs[0].target': required, but missing" in message
    assert "at 'jobs[0].schedule': required, but missing" in message


def test_a_job_level_problem_names_the_job():
    message = _config_error(TARGETS + "jobs:\n" + _job(project="shop"))

    assert "at 'jobs[0]': give only one of volumes, project and all (got volumes and project)" in (
        message
    )


def test_load_config_file_reads_that_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSKIT_CONFIG", str(tmp_path / "other.yaml"))
    path = tmp_path / "opskit.yaml"
    path.write_text(TARGETS + "jobs:\n" + _job())

    assert load_config_file(path).jobs[0].name == "nightly-db"


def test_load_config_file_names_the_file_in_errors(tmp_path):
    path = tmp_path / "opskit.yaml"
    path.write_text("jobs:\n" + _job(shedule="hourly"))

    with pytest.raises(errors.ConfigError, match=rf"config {path}: at 'jobs\[0\]\.shedule'"):
        load_config_file(path)

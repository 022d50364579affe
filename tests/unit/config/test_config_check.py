"""`opskit config check|example`: the effective config with secrets masked, and exit codes."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from typer.testing import CliRunner

from opskit import errors
from opskit.actions.config_check import is_secret_name, mask_url, masked_settings, run_config_check
from opskit.cli import config_cmd
from opskit.config import load
from opskit.config.example import generate_example
from opskit.config.load import parse_config
from opskit.log import configure_logging

CONFIG = """\
targets:
  offsite:
    url: s3://acme-backups/prod
    endpoint_url: https://backup:hunter2@minio.internal:9000/?token=abc
    sse: aws:kms
    sse_kms_key_id: alias/backups
jobs:
  - name: nightly-db
    volumes: [pgdata]
    target: offsite
    schedule: daily at 02:30
    retention: {keep_daily: 7}
    ping_url: https://hc-ping.com/0f6a-secret-uuid
notifications:
  webhook_url: https://hooks.slack.com/services/T0/B0/XXXXSECRET
"""


@pytest.fixture(autouse=True)
def logs_to_the_current_stderr():
    """A CliRunner run leaves structlog writing to its closed capture stream; reset it."""
    configure_logging(0)
    yield
    configure_logging(0)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "opskit.yaml"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("api_token", True),
        ("client_secret", True),
        ("sse_kms_key_id", True),
        ("keep_last", False),
        ("keep_tags", False),
        ("url", False),
        ("name", False),
    ],
)
def test_is_secret_name(name, secret):
    assert is_secret_name(name) is secret


@pytest.mark.parametrize(
    ("url", "mask_path", "masked"),
    [
        ("https://u:p@host:9000/x?token=1#f", False, "https://***@host:9000/x?***#***"),
        ("https://host/x", False, "https://host/x"),
        ("https://hc-ping.com/uuid", True, "https://hc-ping.com/***"),
        ("https://hooks.example.com/", True, "https://hooks.example.com/"),
    ],
)
def test_mask_url(url, mask_path, masked):
    assert mask_url(url, mask_path) == masked


def test_masked_settings_fill_defaults_and_hide_secrets():
    settings = masked_settings(parse_config(CONFIG))

    offsite = settings["targets"]["offsite"]
    assert offsite["endpoint_url"] == "https://***@minio.internal:9000/?***"
    assert offsite["sse_kms_key_id"] == "***"
    assert offsite["region"] is None  # unset stays null, not ***
    job = settings["jobs"][0]
    assert job["ping_url"] == "https://hc-ping.com/***"
    assert job["retention"]["keep_daily"] == 7  # keep_* are not secrets
    assert job["retry"] == {"attempts": 3, "backoff_seconds": 60, "max_backoff_seconds": 3600}
    assert settings["notifications"]["webhook_url"] == "https://hooks.slack.com/***"
    assert settings["protected_tags"] == ["pre-upgrade", "pre-restore"]
    dumped = json.dumps(settings)
    for secret in ("hunter2", "abc", "secret-uuid", "XXXXSECRET", "alias/backups"):
        assert secret not in dumped


def test_names_the_user_chose_are_never_masked():
    config = parse_config(
        "targets:\n  keystore:\n    url: /b\njobs:\n  - {name: token-db, all: true, "
        "labels: {api_key: x}, target: keystore, schedule: hourly}\n"
    )

    settings = masked_settings(config)

    assert list(settings["targets"]) == ["keystore"]
    assert settings["jobs"][0]["name"] == "token-db"
    assert settings["jobs"][0]["labels"] == {"api_key": "x"}


def test_run_config_check_says_where_the_config_came_from(config_file, tmp_path, monkeypatch):
    monkeypatch.delenv("OPSKIT_CONFIG", raising=False)
    monkeypatch.setattr(load, "DEFAULT_CONFIG_PATHS", (tmp_path / "none.yaml",))

    assert run_config_check(config_file).path == config_file
    assert run_config_check(None).path is None
    monkeypatch.setenv("OPSKIT_CONFIG", str(config_file))
    assert run_config_check(None).path == config_file


def test_check_prints_the_effective_config_as_yaml(config_file):
    result = CliRunner().invoke(config_cmd.app, ["check", "--config", str(config_file)])

    assert result.exit_code == 0, result.output
    first, _, rest = result.stdout.partition("\n")
    assert first == f"# config: {config_file}"
    printed = yaml.safe_load(rest)
    assert printed["jobs"][0]["compress"] == "zstd"
    assert printed["targets"]["offsite"]["sse_kms_key_id"] == "***"
    assert "hunter2" not in result.stdout


def test_the_printed_config_is_itself_valid(tmp_path):
    source = tmp_path / "example.yaml"
    source.write_text(generate_example())

    result = CliRunner().invoke(config_cmd.app, ["check", "-c", str(source)])

    assert result.exit_code == 0, result.output
    again = parse_config(result.stdout)  # nothing masked in the example but URL paths
    assert [job.name for job in again.jobs] == ["nightly-db", "shop-weekly", "tier-db"]


def test_check_without_a_file_uses_the_built_in_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("OPSKIT_CONFIG", raising=False)
    monkeypatch.setattr(load, "DEFAULT_CONFIG_PATHS", (tmp_path / "none.yaml",))

    result = CliRunner().invoke(config_cmd.app, ["check"])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# config: built-in defaults (no file found)\n")
    assert yaml.safe_load(result.stdout)["jobs"] == []


def test_check_json(config_file):
    result = CliRunner().invoke(config_cmd.app, ["check", "--json", "-c", str(config_file)])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config_file"] == str(config_file)
    assert document["config"]["jobs"][0]["name"] == "nightly-db"
    assert document["config"]["notifications"]["on"] == ["failure", "recovery"]


def test_check_of_an_invalid_file_raises_the_config_error(tmp_path):
    path = tmp_path / "opskit.yaml"
    path.write_text("jobs:\n  - {name: a, volumes: [v], target: nowhere, shedule: hourly}\n")

    result = CliRunner().invoke(config_cmd.app, ["check", "-c", str(path)])

    # The CLI's edge (opskit.cli.main) prints `error: ...` and exits with the error's code.
    assert isinstance(result.exception, errors.ConfigError)
    assert result.exception.exit_code == 2
    message = str(result.exception)
    assert "at 'jobs[0].shedule': unknown key 'shedule' (did you mean 'schedule'?)" in message
    assert "at 'jobs[0].schedule': required, but missing" in message
    assert "at 'jobs[0].target': unknown target 'nowhere'" in message
    assert result.stdout == ""


def test_check_of_a_missing_file_is_a_config_error(tmp_path):
    result = CliRunner().invoke(config_cmd.app, ["check", "-c", str(tmp_path / "none.yaml")])

    assert isinstance(result.exception, errors.ConfigError)


def test_example_prints_the_generated_example(monkeypatch):
    monkeypatch.setenv("OPSKIT_CONFIG", os.devnull)

    result = CliRunner().invoke(config_cmd.app, ["example"])

    assert result.exit_code == 0, result.output
    assert result.stdout == generate_example()


@pytest.mark.parametrize("command", [[], ["check"], ["example"]])
def test_help_has_examples(command):
    result = CliRunner().invoke(config_cmd.app, [*command, "--help"])

    assert result.exit_code == 0, result.output
    assert "Examples" in result.output

"""Help with examples on every command, --version, and usage errors exiting 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from opskit import __version__
from opskit.cli import app
from opskit.log import configure_logging

COMMANDS = [
    [],
    ["volume"],
    *(["volume", name] for name in ("backup", "list", "restore", "recover", "prune", "delete")),
    ["volume", "verify"],
    ["volume", "snapshot"],
    ["ports"],
    ["ports", "audit"],
    ["config", "check"],
    ["config", "example"],
    ["daemon"],
    ["run"],
]


@pytest.fixture(autouse=True)
def logs_to_the_current_stderr():
    """A CliRunner run leaves structlog writing to its closed capture stream; reset it."""
    configure_logging(0)
    yield
    configure_logging(0)


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setenv("OPSKIT_CONFIG", os.devnull)
    return CliRunner()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "opskit")
def test_help_shows_usage_and_examples(command, runner):
    result = runner.invoke(app, [*command, "--help"])

    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "Examples" in result.output
    assert f"opskit {' '.join(command)}".strip() in result.output


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (["volume", "backup"], ["--to", "--compress", "--tag", "--stop-containers", "--json"]),
        (["volume", "list"], ["--from", "--volume", "--json"]),
        (
            ["volume", "restore"],
            ["--from", "--backup", "--into", "--force", "--stop-containers", "--json"],
        ),
    ],
)
def test_help_lists_the_options_of_issue_2(command, options, runner):
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)

    for option in options:
        assert option in result.output, f"{option} missing from `{' '.join(command)} --help`"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "opskit")
def test_help_shows_no_type_noise(command, runner):
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)

    for noise in ("<bool>", "<list[str]>", "<str>", "<int>", "[default: None]"):
        assert noise not in result.output, f"{noise} in `{' '.join(command)} --help`"


def test_global_options_work_after_the_subcommand():
    from opskit.cli import hoist_global_options

    hoisted = hoist_global_options(["volume", "backup", "pgdata", "-vv", "--log-json",
                                    "--config", "x.yaml", "--", "-v"])  # fmt: skip
    assert hoisted == ["-vv", "--log-json", "--config", "x.yaml", "volume", "backup", "pgdata",
                       "--", "-v"]  # fmt: skip


def test_version_prints_the_version(runner):
    result = runner.invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.output.strip() == f"opskit {__version__}"


@pytest.mark.parametrize(
    "arguments",
    [
        ["volume", "backup", "pgdata", "--compress", "bogus"],
        ["volume", "backup"],
        ["volume", "restore", "pgdata", "--bogus"],
        ["nosuchcommand"],
    ],
)
def test_usage_error_exits_2(arguments, runner):
    result = runner.invoke(app, arguments)

    assert result.exit_code == 2, result.output


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, OPSKIT_CONFIG=os.devnull)
    return subprocess.run(
        [sys.executable, "-m", "opskit", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


def test_python_m_opskit_version():
    result = _run("--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"opskit {__version__}"


def test_python_m_opskit_usage_error_exits_2_without_traceback():
    result = _run("volume", "backup", "pgdata", "--compress", "bogus")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--compress" in result.stderr
    assert result.stdout == ""


def test_python_m_opskit_without_arguments_shows_help():
    result = _run()

    assert "Usage" in result.stdout + result.stderr
    assert "volume" in result.stdout + result.stderr
    assert result.returncode in (0, 2)


def test_with_log_json_the_final_error_is_a_json_line(tmp_path):
    import json

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "opskit",
            "volume",
            "list",
            "--from",
            str(tmp_path / "missing"),
            "--log-json",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env={**os.environ, "OPSKIT_CONFIG": os.devnull},
    )

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    event = json.loads(lines[0])
    assert event["event"] == "error" and event["exit_code"] == 1
    assert "does not exist" in event["message"]

"""Start-up stays light: help loads typer and the commands' options, and each command imports
only what it runs (issue 13). Timings are for benchmarks/volume_throughput.py --startup-only;
these tests check which modules a run loads, which does not depend on the machine's load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from opskit import __main__ as entry

REPOSITORY = Path(__file__).resolve().parents[3]

# Runs opskit as `python -m opskit ARGS` does, then writes every module the run loaded (JSON)
# to argv[1], at exit: after help, a usage error or a command's last line alike.
MODULES_PROBE = """
import atexit, json, runpy, sys
report = sys.argv[1]
atexit.register(lambda: open(report, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["opskit", *sys.argv[2:]]
runpy.run_module("opskit", run_name="__main__", alter_sys=True)
"""

# What no help may load: the engine, S3, the config schema and the port audit.
HEAVY_FOR_HELP = (
    "docker",
    "requests",
    "boto3",
    "botocore",
    "pydantic",
    "yaml",
    "zstandard",
    "pyrage",
    "opskit.ports",
    "opskit.actions",
    "opskit.config",
    "opskit.engine",
    "opskit.storage",
    "opskit.repository",
    "opskit.daemon",
    "opskit.volume_ops",
)
# The top-level help sets up no logging either (a command's help does: the root callback runs
# first): no structlog, and no asyncio, which structlog imports.
HEAVY_FOR_TOP_HELP = (*HEAVY_FOR_HELP, "structlog", "asyncio")

# The port audit proper. opskit.ports.model (severities and rule ids, standard library only)
# comes with the config schema, whose ports policy names the rules.
PORT_AUDIT = (
    "opskit.actions.audit_ports",
    "opskit.ports.compose",
    "opskit.ports.rules",
    "opskit.ports.runtime",
    "opskit.ports.report",
    "opskit.ports.sarif",
    "opskit.ports.yaml12",
)

HELPS = [
    ["volume", "--help"],
    ["volume", "list", "--help"],
    ["volume", "backup", "--help"],
    ["volume", "restore", "--help"],
    ["volume", "snapshot", "--help"],
    ["ports", "audit", "--help"],
    ["config", "check", "--help"],
    ["daemon", "--help"],
    ["run", "--help"],
]


def loaded_modules(tmp_path: Path, *arguments: str) -> tuple[set[str], str]:
    """Run `python -m opskit ARGUMENTS` (no config file); return the modules it loaded and its
    output. Fail unless it exited 0."""
    report = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", MODULES_PROBE, str(report), *arguments],
        cwd=REPOSITORY,
        env=dict(os.environ, OPSKIT_CONFIG=os.devnull),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return set(json.loads(report.read_text())), result.stdout + result.stderr


def among(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The modules that are one of `names` or inside one of them (`opskit.ports.rules` is
    inside `opskit.ports`)."""
    return sorted(
        module
        for module in modules
        if any(module == name or module.startswith(name + ".") for name in names)
    )


def test_help_loads_no_engine_s3_config_logging_or_port_audit(tmp_path):
    modules, output = loaded_modules(tmp_path, "--help")

    assert "Usage" in output and "volume" in output
    assert "typer" in modules  # the probe sees the run's imports
    assert among(modules, HEAVY_FOR_TOP_HELP) == []


@pytest.mark.parametrize("command", HELPS, ids=" ".join)
def test_command_help_loads_no_engine_s3_config_or_port_audit(command, tmp_path):
    modules, output = loaded_modules(tmp_path, *command)

    assert "Usage" in output
    assert among(modules, HEAVY_FOR_HELP) == []


def test_volume_list_loads_no_s3_and_no_port_audit(tmp_path):
    store = tmp_path / "store"
    store.mkdir()

    modules, output = loaded_modules(tmp_path, "volume", "list", "--from", str(store))

    assert f"no backups in {store}" in output
    assert "opskit.actions.list_backups" in modules
    assert among(modules, ("boto3", "botocore", "opskit.storage.s3", *PORT_AUDIT)) == []
    assert among(modules, ("opskit.actions",)) == [
        "opskit.actions",
        "opskit.actions.context",
        "opskit.actions.list_backups",
    ]


def test_volume_list_loads_no_docker(tmp_path):
    modules, _ = loaded_modules(tmp_path, "volume", "list", "--from", str(tmp_path))

    assert among(modules, ("docker", "requests")) == []
    # What a backup's source is (plain data) comes from the engine package, not the engine.
    assert among(modules, ("opskit.engine",)) == ["opskit.engine", "opskit.engine.source"]


def test_cli_copies_of_defaults_match_their_sources():
    """The CLI writes out four values help shows, so that help imports none of their modules;
    they must stay equal to the originals."""
    from opskit.cli import daemon as daemon_cli
    from opskit.cli import options, volume_snapshot
    from opskit.cli import ports as ports_cli
    from opskit.daemon import scheduler
    from opskit.engine import client
    from opskit.ports.model import Severity
    from opskit.repository import snapshots

    assert volume_snapshot.DEFAULT_TAG == snapshots.DEFAULT_TAG
    assert options.CONTEXT_PREFIX == client.CONTEXT_PREFIX
    assert daemon_cli.DEFAULT_STATE_FILE == scheduler.DEFAULT_STATE_FILE
    assert [choice.value for choice in ports_cli.SeverityChoice] == [
        severity.value for severity in Severity
    ]


def _record(signum: int, frame: object) -> None:
    """A stand-in for opskit.signals.handle."""


def test_starting_up_puts_the_previous_handlers_back_and_keeps_ignored_signals():
    saved = {signum: signal.getsignal(signum) for signum in entry._STARTUP_SIGNALS}
    try:
        signal.signal(signal.SIGTERM, _record)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

        with entry.starting_up():
            during = {signum: signal.getsignal(signum) for signum in entry._STARTUP_SIGNALS}

        assert during[signal.SIGTERM] is entry._interrupted_during_startup
        assert during[signal.SIGINT] is entry._interrupted_during_startup
        assert during[signal.SIGHUP] is signal.SIG_IGN  # the daemon's SIGHUP stays ignored
        assert signal.getsignal(signal.SIGTERM) is _record
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


# With opskit's real handlers installed (as `opskit.cli.main()` does first), a SIGTERM while a
# command imports its libraries ends the process with the start-up line, not a traceback.
SIGNAL_PROBE = """
import os, signal
from opskit import signals
from opskit.__main__ import starting_up
signals.install()
with starting_up():
    os.kill(os.getpid(), signal.SIGTERM)
    import json  # any bytecode after the signal runs its handler
print("not reached")
"""


def test_a_signal_while_a_command_imports_ends_with_the_start_up_line():
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_PROBE],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stderr == "error: interrupted by SIGTERM during start-up\n"
    assert result.stdout == ""

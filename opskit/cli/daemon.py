"""`opskit daemon` and `opskit run JOB`: the scheduler, and one job once (cron, systemd timers)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from opskit import errors, log
from opskit.__main__ import starting_up
from opskit.cli import render
from opskit.cli.options import ConfigOption, JsonOption
from opskit.log import configure_logging

if TYPE_CHECKING:
    from opskit.daemon.report import JobReport

# opskit.daemon.scheduler.DEFAULT_STATE_FILE, written out so that help imports no scheduler
# (tests/unit/cli/test_startup.py keeps the two equal).
DEFAULT_STATE_FILE = Path("/var/lib/opskit/daemon-state.json")

StateFileOption = Annotated[
    Path,
    typer.Option(
        "--state-file",
        help="Where the daemon keeps each job's last run, to catch up once after downtime.",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon)
    app.command("run")(run)


def daemon(
    once: Annotated[
        bool, typer.Option("--once", help="Run every job once and exit (non-zero if any failed).")
    ] = False,
    state_file: StateFileOption = DEFAULT_STATE_FILE,
    config_path: ConfigOption = None,
) -> None:
    """Run the config's backup jobs on their schedules: backup, restore drill, prune, report.

    Logs are JSON lines on stdout (with --log-json, or when stdout is not a terminal). SIGTERM
    or SIGINT stops it (an in-flight backup is aborted, never left half-stored), SIGHUP
    re-reads the config.

    Examples:

    \b
      opskit daemon --config /etc/opskit/opskit.yaml
      opskit daemon --once --log-json
    """
    with starting_up():
        from opskit.daemon.scheduler import Daemon
    _daemon_logging()
    scheduler = Daemon(config_path, state_file)
    if once:
        _exit_for(scheduler.run_once(), json_output=False)
    raise typer.Exit(scheduler.run())


def run(
    job: Annotated[str, typer.Argument(help="The name of a job in the config.")],
    json_output: JsonOption = False,
    config_path: ConfigOption = None,
) -> None:
    """Run one job of the config once: the cron and systemd-timer mode.

    Exit 0 if the backup, its drill and the prune all succeeded, 1 otherwise. Logs are JSON
    lines on stdout, as the daemon's; with --json stdout holds only the report, the logs go
    to stderr.

    Examples:

    \b
      opskit run nightly-db
      opskit run nightly-db --json
    """
    with starting_up():
        from opskit.daemon.scheduler import Daemon
    # With --json, stdout is the one report document: the logs go to stderr then.
    _daemon_logging(to_stdout=not json_output)
    scheduler = Daemon(config_path, state_file=None)
    _exit_for(scheduler.run_once(only=job), json_output)


def _daemon_logging(to_stdout: bool = True) -> None:
    # A service's stdout is its journal: one JSON event per line there.
    stream = sys.stdout if to_stdout else sys.stderr
    json_logs = log.json_enabled() or not stream.isatty()
    configure_logging(max(1, log.verbosity()), json_logs, to_stdout=to_stdout)


def _exit_for(reports: list[JobReport], json_output: bool) -> None:
    if json_output:
        render.print_json([report.to_dict() for report in reports] if len(reports) > 1
                          else reports[0].to_dict())  # fmt: skip
    failed = [report for report in reports if not report.ok]
    for report in failed:
        reasons = [report.error] + [f"{s.source}: {s.reason}" for s in report.sources if not s.ok]
        render.notice(f"job {report.job} failed: {'; '.join(r for r in reasons if r)}")
    raise typer.Exit(errors.EXIT_FAILURE if failed else 0)

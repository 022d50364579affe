"""The command line: parse, call an action, render. No logic lives here.

`main()` is the console script. It is the one place where `OpskitError`s become a one-line
message on stderr and an exit code, and where Ctrl-C / SIGTERM become `Interrupted`.

Importing the CLI loads typer and the commands' options, nothing else: each command imports
the actions, config and libraries it runs when it runs, under `opskit.__main__.starting_up()`,
so `opskit --help` stays fast (tests/unit/cli/test_startup.py keeps it so).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from typer.main import get_command

from opskit import __version__, errors, signals
from opskit.__main__ import is_daemon, starting_up
from opskit.cli import (
    config_cmd,
    daemon,
    ports,
    volume,
    volume_retention,
    volume_snapshot,
    volume_verify,
)
from opskit.log import configure_logging, get_logger, json_enabled, logs_to_stdout

log = get_logger(__name__)

app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich's costs 0.27 s of start-up (issue 13)
    name="opskit",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# volume_retention, volume_verify and volume_snapshot add their commands (prune, delete,
# verify, snapshot) to volume.app.
COMMAND_MODULES = (volume, volume_retention, volume_verify, volume_snapshot)
app.add_typer(volume.app, name="volume")
app.add_typer(ports.app, name="ports")
app.add_typer(config_cmd.app, name="config")
daemon.register(app)


def _print_version(value: bool) -> None:
    if value:
        print(f"opskit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logs on stderr (-vv: debug).")
    ] = 0,
    log_json: Annotated[bool, typer.Option("--log-json", help="Logs as JSON lines.")] = False,
    config_path: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file, for every command.", show_default=False),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print version."),
    ] = False,
) -> None:
    """Back up and restore Docker volumes, audit published ports.

    Examples:

    \b
      opskit volume backup pgdata --to /var/backups/opskit
      opskit volume restore pgdata --from /var/backups/opskit
      opskit ports audit -f compose.yaml --fail-on high
    """
    configure_logging(verbose, log_json)
    if config_path is not None:
        # What `--config` means after the subcommand too: it wins over $OPSKIT_CONFIG.
        os.environ["OPSKIT_CONFIG"] = str(config_path)


def main() -> None:
    """Run the CLI; turn opskit errors into one line on stderr and an exit code.

    Typer's standalone mode handles usage errors (exit 2) and --help; everything of ours
    surfaces here as an `OpskitError` or `Interrupted`.
    """
    # Ctrl-C, SIGTERM (systemd stop, timeouts) and SIGHUP (a dropped SSH session) unwind
    # through `finally` blocks, which remove helper containers, abort uploads and restart
    # stopped containers.
    # The start-up handlers of `opskit.__main__` were in place until here.
    signals.install()
    if is_daemon(sys.argv[1:]):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the daemon's own handler comes next
    try:
        with starting_up():
            # typer makes click commands of ours: start-up still, nothing has been done yet.
            command = get_command(app)
        # Logging is configured by `root`, which runs before every command (not for --help).
        command(args=hoist_global_options(sys.argv[1:]), prog_name="opskit")
    except errors.OpskitError as error:
        _fail(str(error), error.exit_code)
    except errors.Interrupted as interrupted:
        _fail(
            f"interrupted by {interrupted.signal_name}; stopped and cleaned up",
            interrupted.exit_code,
        )
    except Exception as bug:  # noqa: BLE001 - the last resort: never a traceback for users
        log.debug("internal error", exc_info=True)  # the traceback, with -vv only
        _fail(
            f"internal error: {type(bug).__name__}: {bug} (run with -vv for details, and "
            "please report it)",
            errors.EXIT_FAILURE,
        )


GLOBAL_FLAGS = ("--verbose", "--log-json")
GLOBAL_WITH_VALUE = ("--config", "-c")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Given the arguments, return them with -v, --log-json and --config moved in front of the
    subcommand, so that they work after it too (`opskit volume backup pgdata -v`).

    Nothing after `--` moves.
    """
    hoisted: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            rest += argv[index:]
            break
        if token in GLOBAL_FLAGS or (token.startswith("-v") and set(token[1:]) == {"v"}):
            hoisted.append(token)
        elif token in GLOBAL_WITH_VALUE and index + 1 < len(argv):
            hoisted += argv[index : index + 2]
            index += 1
        elif token.startswith("--config="):
            hoisted.append(token)
        else:
            rest.append(token)
        index += 1
    return hoisted + rest


def _fail(message: str, exit_code: int) -> NoReturn:
    from opskit import untrusted

    # The last guard: whatever a message quotes (a name from a store, a file's key) stays one
    # line of plain text.
    text = untrusted.printable(message)
    if json_enabled():
        # With JSON logs the error is a log event too: one JSON line, where the logs go.
        log.error("error", message=text, exit_code=exit_code)
    if not json_enabled() or logs_to_stdout():
        # On stderr a person (or a test) reads it, whatever the journal got.
        print(f"error: {text}", file=sys.stderr)
    sys.exit(exit_code)

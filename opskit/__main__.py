"""Run opskit: the console script `opskit` and `python -m opskit`.

Loading the CLI imports typer, docker, pydantic and boto3's neighbours, which takes most of a
second. A Ctrl-C or SIGTERM then must not print a traceback: handlers that end the process
quietly are installed first, with nothing but the standard library loaded. Nothing has been
done yet at that point, so there is nothing to clean up. `opskit.cli.main()` installs the real
handlers (`opskit.signals`) as its first step.
"""

import os
import signal
import sys

# Signals that end a start-up, and the exit code the shell would show for each.
_STARTUP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def is_daemon(arguments: list[str]) -> bool:
    """Whether the command line runs the long-lived daemon (`opskit [...] daemon`, not --once)."""
    return "daemon" in arguments and "--once" not in arguments and "--help" not in arguments


def _interrupted_during_startup(signum: int, frame: object) -> None:
    name = signal.Signals(signum).name
    os.write(2, f"error: interrupted by {name} during start-up\n".encode())
    # os._exit: raising here would unwind through half-run imports and print their traceback.
    os._exit(128 + signum)


def main() -> None:
    """Install quiet start-up signal handlers, then load and run the CLI."""
    for signum in _STARTUP_SIGNALS:
        signal.signal(signum, _interrupted_during_startup)
    if is_daemon(sys.argv[1:]):
        # `systemctl reload` right after `start` must not stop the daemon: SIGHUP only means
        # "re-read the config", and there is none to re-read before it runs.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from opskit.cli import main as run_cli  # the slow part: imports of third-party packages

    run_cli()


if __name__ == "__main__":
    main()

"""Run opskit: the console script `opskit` and `python -m opskit`.

Start-up is imports: `opskit.cli` loads typer and what help needs, and each command then
imports the libraries it runs (pydantic, docker, ...) as its first step. A Ctrl-C or SIGTERM
during start-up must not print a traceback: handlers that end the process quietly are
installed first, with nothing but the standard library loaded. Nothing has been done yet at
that point, so there is nothing to clean up. `opskit.cli.main()` installs the real handlers
(`opskit.signals`) as its first step; a command's own imports run under `starting_up()`,
which puts the quiet handlers back for that time.
"""

import contextlib
import os
import signal
import sys
from collections.abc import Iterator

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


@contextlib.contextmanager
def starting_up() -> Iterator[None]:
    """Run the block (a command importing what it uses, before it has done anything) with the
    quiet start-up handlers; put back the handlers in place before (`opskit.signals`') after.

    A signal that is ignored stays ignored (the daemon's SIGHUP). Off the main thread, where
    no handler can be set, nothing changes.
    """
    saved = {}
    try:
        for signum in _STARTUP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                saved[signum] = signal.signal(signum, _interrupted_during_startup)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for signum, handler in saved.items():
            # None: a handler set outside Python, which cannot be put back from here.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def main() -> None:
    """Install quiet start-up signal handlers, then load and run the CLI."""
    for signum in _STARTUP_SIGNALS:
        signal.signal(signum, _interrupted_during_startup)
    if is_daemon(sys.argv[1:]):
        # `systemctl reload` right after `start` must not stop the daemon: SIGHUP only means
        # "re-read the config", and there is none to re-read before it runs.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from opskit.cli import main as run_cli  # typer, and the commands' options

    run_cli()


if __name__ == "__main__":
    main()

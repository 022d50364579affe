"""Logging set-up: structlog to stderr, so stdout stays for results (tables, JSON)."""

from __future__ import annotations

import logging
import sys

import structlog

_settings = {"json": False, "verbosity": 0, "stdout": False}


def logs_to_stdout() -> bool:
    """Whether logs go to stdout (the daemon: its stdout is the journal)."""
    return bool(_settings["stdout"])


def verbosity() -> int:
    """The -v count the command line gave."""
    return int(_settings["verbosity"])


def json_enabled() -> bool:
    """Whether logs are JSON lines (then notices for people are log lines too)."""
    return bool(_settings["json"])


def configure_logging(verbosity: int = 0, json_logs: bool = False, to_stdout: bool = False) -> None:
    """Send structured logs to stderr (stdout with `to_stdout`: the daemon, whose stdout is the
    journal). 0 = warnings, 1 = info, 2+ = debug."""
    _settings["json"] = json_logs
    _settings["verbosity"] = verbosity
    _settings["stdout"] = to_stdout
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_StdoutLogger if to_stdout else _StderrLogger,
        cache_logger_on_first_use=False,
    )


class _StderrLogger:
    """Writes each line to the *current* sys.stderr, looked up at write time, so a logger made
    before stderr was swapped (test runners, daemon log redirection) never writes to a closed
    stream."""

    def __init__(self, *args: object) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _StdoutLogger(_StderrLogger):
    """The same on the current sys.stdout."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stdout, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg

"""Logging set-up: structlog to stderr, so stdout stays for results (tables, JSON).

structlog loads rich and asyncio: 0.18 s of start-up (issue 13). So modules log through
`get_logger`, whose loggers load structlog at their first message that is shown: a run that
logs nothing (at the default verbosity, warnings and errors only) never loads it.
"""

from __future__ import annotations

import sys
from typing import Any

# "pending": the settings are not applied to structlog yet (it is not loaded).
_settings = {"json": False, "verbosity": 0, "stdout": False, "pending": True}
# The verbosity (-v count) that shows each level; the rest are always shown.
_SHOWN_FROM = {"debug": 2, "info": 1}


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
    journal). 0 = warnings, 1 = info, 2+ = debug. Applied to structlog now if it is loaded,
    else when it first is."""
    _settings["json"] = json_logs
    _settings["verbosity"] = verbosity
    _settings["stdout"] = to_stdout
    _settings["pending"] = True
    if "structlog" in sys.modules:
        _apply()


def _apply() -> None:
    import logging

    import structlog

    _settings["pending"] = False
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity(), logging.DEBUG)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_enabled()
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
        logger_factory=_StdoutLogger if logs_to_stdout() else _StderrLogger,
        cache_logger_on_first_use=False,
    )


class Logger:
    """A structlog logger, made when a message is first shown (`structlog.get_logger`'s then).

    Until structlog is loaded, messages the verbosity hides are dropped here, as structlog's
    filter would drop them. Once it is, every call goes to structlog, configured as it is (a
    test's `capture_logs` included).
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        if "structlog" not in sys.modules and _SHOWN_FROM.get(method, 0) > verbosity():
            return _dropped
        import structlog

        if _settings["pending"] and not structlog.is_configured():
            _apply()
        return getattr(structlog.get_logger(self._name), method)


def get_logger(name: str) -> Logger:
    """The logger of module `name`, used as a structlog logger (`log.info("event", k=v)`)."""
    return Logger(name)


def _dropped(*args: object, **fields: object) -> None:
    """A message below the verbosity, before structlog is loaded."""


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

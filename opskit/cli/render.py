"""Rendering results for people: tables, sizes, progress bars, notices. Only the CLI uses this.

It imports rich, the events and the run context only when a command first renders or runs
something, so that the CLI's help loads none of them: `stdout` and `stderr` (rich consoles)
are made on first use. It logs through `opskit.log`, which loads structlog at the first
message shown.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opskit import log

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from opskit import events
    from opskit.actions.context import RunContext
    from opskit.config.encryption import Encryption
    from opskit.config.schema import Config

_consoles: dict[str, Console] = {}
_events_log = log.get_logger("opskit.events")


def __getattr__(name: str) -> Console:
    """`render.stdout` and `render.stderr`: the rich consoles, made on first use."""
    if name in ("stdout", "stderr"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _console(name: str) -> Console:
    if name not in _consoles:
        from rich.console import Console

        if name == "stdout":
            # Piped output must not be cut to 80 columns: scripts grep and awk it.
            width = None if sys.stdout.isatty() else 400
            _consoles[name] = Console(highlight=False, soft_wrap=True, width=width)
        else:
            _consoles[name] = Console(stderr=True, highlight=False, soft_wrap=True)
    return _consoles[name]


def print_json(document: Any) -> None:
    """One JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def notice(message: str) -> None:
    """A one-line notice for people, on stderr (stdout stays for results)."""
    _console("stderr").print(message, markup=False)


def event(happened: events.Event) -> None:
    """The CLI's event sink. Events for people are a notice on stderr (a JSON log line with
    --log-json); every event is also logged with its fields (shown with -v)."""
    fields = happened.fields()
    if log.json_enabled():
        level = happened.severity()
        level = level if level != "info" or not happened.for_people else "warning"
        getattr(_events_log, level)(happened.name, message=happened.message(), **fields)
        return
    if happened.for_people:
        notice(happened.message())
        _events_log.debug(happened.name, **fields)
    else:
        # What the command prints as its result anyway (a failed drill, a failed hook): the
        # log line is for -v, never a second copy of the message.
        _events_log.info(happened.name, **fields)


def progress_callback(bar: Bar, context: RunContext) -> Callable[[int], None]:
    """The bar when it is shown; else progress events every 10 s (in the logs, with -v)."""
    from opskit import events

    if bar.shown:
        return bar.advance
    return events.progress_reporter(context.emit, bar.description)


def run_context(config: Config, identity_file: Path | None = None) -> RunContext:
    """The run context of one CLI command: its events rendered by `event`."""
    from opskit.actions.context import RunContext

    return RunContext(config, event, identity_file)


def encryption(recipients: list[str] | None, recipients_file: Path | None) -> Encryption:
    """--encrypt-to and --encrypt-to-file as an encryption setting (checked by the action)."""
    from opskit.config.encryption import Encryption

    return Encryption.model_construct(
        recipients=list(recipients or []),
        recipients_file=str(recipients_file) if recipients_file else None,
        identity_file=None,
    )


def printable(text: str) -> str:
    """Given text from a store or an input file (a backup id, source, tag, file name), return it
    with control characters escaped (`\\x1b`, `\\n`): it cannot recolour or rewrite the
    terminal. Apply it to every such value in tables and messages (not in `--json`, whose
    encoder escapes them already)."""
    from opskit import untrusted  # (and yaml): not for help

    return untrusted.printable(text)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


class Bar:
    """A progress bar's two callbacks: `advance(bytes)` and `set_total(bytes)`."""

    def __init__(self, progress: Progress | None, task: TaskID | None, description: str) -> None:
        self.progress, self.task, self.description = progress, task, description

    def advance(self, amount: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, amount)

    def set_total(self, total: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, total=total)

    @property
    def shown(self) -> bool:
        return self.progress is not None


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool) -> Iterator[Bar]:
    """Yield a `Bar`; it draws only when stdout is a terminal and the output is not JSON."""
    if not enabled or not sys.stdout.isatty():
        yield Bar(None, None, description)
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=_console("stderr"),
        transient=True,
    ) as progress:
        yield Bar(progress, progress.add_task(description, total=None), description)

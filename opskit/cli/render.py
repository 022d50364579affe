"""Rendering results for people: tables, sizes, progress bars, notices. Only the CLI uses this."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from opskit import events, log, untrusted
from opskit.actions.context import RunContext
from opskit.config.encryption import Encryption
from opskit.config.schema import Config

_events_log = structlog.get_logger("opskit.events")

# Piped output must not be cut to 80 columns: scripts grep and awk it.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 400)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    """One JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def notice(message: str) -> None:
    """A one-line notice for people, on stderr (stdout stays for results)."""
    stderr.print(message, markup=False)


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
    if bar.shown:
        return bar.advance
    return events.progress_reporter(context.emit, bar.description)


def run_context(config: Config, identity_file: Path | None = None) -> RunContext:
    """The run context of one CLI command: its events rendered by `event`."""
    return RunContext(config, event, identity_file)


def encryption(recipients: list[str] | None, recipients_file: Path | None) -> Encryption:
    """--encrypt-to and --encrypt-to-file as an encryption setting (checked by the action)."""
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
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        yield Bar(progress, progress.add_task(description, total=None), description)

"""Rendering results for people: tables, sizes, progress bars, notices. Only the CLI uses this."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

# Piped output must not be cut to 80 columns: scripts grep and awk it.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 400)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    """One JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def notice(message: str) -> None:
    """A one-line notice for people, on stderr (stdout stays for results)."""
    stderr.print(message, markup=False)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None, enabled: bool
) -> Iterator[Callable[[int], None] | None]:
    """Yield a callback that advances a bar by n bytes, or None when no bar should show.

    A bar shows only when stdout is a terminal and the output is not JSON.
    """
    if not enabled or not sys.stdout.isatty():
        yield None
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
        task = progress.add_task(description, total=total)
        yield lambda amount: progress.advance(task, amount)

"""Ctrl-C, SIGTERM and SIGHUP become `Interrupted`, except inside a section that must finish.

The CLI installs `handle` for the three signals. Code that must not stop halfway (the restore's
swap of old and new contents) runs under `deferred()`: a signal arriving then is remembered and
raised as soon as the section is over, or handed to the caller to decide (`reraise=False`).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass

from opskit import errors

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_depth = 0
_pending: str | None = None


@dataclass
class Deferred:
    """What arrived during a deferred section: the signal's name, or None."""

    signal_name: str | None = None


def handle(signum: int, frame: object) -> None:
    """The signal handler: raise `Interrupted`, or remember it while a section is deferred."""
    global _pending
    name = signal.Signals(signum).name
    if _depth:
        _pending = name
        return
    raise errors.Interrupted(name)


def install() -> None:
    for signum in HANDLED:
        signal.signal(signum, handle)


@contextlib.contextmanager
def deferred(reraise: bool = True) -> Iterator[Deferred]:
    """Run the block to its end even if a signal arrives. Afterwards raise `Interrupted`, or
    with `reraise=False` record the signal in the yielded `Deferred` and carry on."""
    global _depth, _pending
    caught = Deferred()
    _depth += 1
    name: str | None = None
    try:
        yield caught
    finally:
        _depth -= 1
        if _depth == 0:
            # Taken even when the block raised: its error is what the run reports, and a
            # signal left pending would be raised by a later, unrelated section.
            name, _pending = _pending, None
    if name is not None:
        if reraise:
            raise errors.Interrupted(name)
        caught.signal_name = name

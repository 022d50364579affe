"""What actions report while they work, as typed events instead of strings.

Actions never print. They hand events to the run's sink (`RunContext.emit`): the CLI renders
each as one line for people, the daemon logs each as a structlog event with its fields and
counts them. `message()` is the line for people; `fields()` are the values for logs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Event:
    """The base of every event. `name` is its log event name; `level` its log level."""

    name: ClassVar[str] = "event"
    level: ClassVar[str] = "info"
    # False for what the CLI prints anyway as the command's result (a table, a summary).
    for_people: ClassVar[bool] = True

    def message(self) -> str:
        raise NotImplementedError

    def severity(self) -> str:
        """The log level of this event (a failed drill's is higher than a passed one's)."""
        return self.level

    def fields(self) -> dict[str, object]:
        return dataclasses.asdict(self)


EventSink = Callable[[Event], None]


def discard(event: Event) -> None:
    """The sink that drops every event (a run nobody watches)."""


def _names(containers: tuple[str, ...]) -> str:
    return ", ".join(containers)


@dataclass(frozen=True)
class ContainersStopping(Event):
    name: ClassVar[str] = "containers.stopping"
    containers: tuple[str, ...]

    def message(self) -> str:
        return f"stopping {_names(self.containers)}"


@dataclass(frozen=True)
class ContainersStarted(Event):
    name: ClassVar[str] = "containers.started"
    containers: tuple[str, ...]

    def message(self) -> str:
        return f"started {_names(self.containers)} again"


@dataclass(frozen=True)
class ContainersNotStarted(Event):
    """Containers opskit stopped and could not start again."""

    name: ClassVar[str] = "containers.not_started"
    level: ClassVar[str] = "error"
    containers: tuple[str, ...]

    def message(self) -> str:
        return (
            f"error: could not start {_names(self.containers)} again; start them by hand: "
            f"docker start {' '.join(self.containers)}"
        )


@dataclass(frozen=True)
class ContainersLeftStopped(Event):
    """Containers left stopped on purpose: their data is half swapped in."""

    name: ClassVar[str] = "containers.left_stopped"
    level: ClassVar[str] = "warning"
    containers: tuple[str, ...]

    def message(self) -> str:
        names = " ".join(self.containers)
        return (
            f"left {names} stopped: their data is half swapped in; start them once "
            f"`opskit volume recover` has finished it: docker start {names}"
        )


@dataclass(frozen=True)
class UsedWhileRunning(Event):
    """A source backed up while containers use it (no --stop-containers)."""

    name: ClassVar[str] = "backup.source_in_use"
    level: ClassVar[str] = "warning"
    source: str
    containers: tuple[str, ...]

    def message(self) -> str:
        return (
            f"warning: {self.source} is used by running containers {_names(self.containers)}; "
            "the copy may not be consistent (use --stop-containers)"
        )


@dataclass(frozen=True)
class LockWaiting(Event):
    name: ClassVar[str] = "lock.waiting"
    holder: str
    target: str

    def message(self) -> str:
        return f"waiting for another {self.holder} to finish with {self.target}"


@dataclass(frozen=True)
class HookStarting(Event):
    name: ClassVar[str] = "hook.start"
    container: str
    phase: str  # "pre" or "post"

    def message(self) -> str:
        return f"running the {self.phase} hook of container {self.container}"


@dataclass(frozen=True)
class HookRan(Event):
    name: ClassVar[str] = "hook.done"
    for_people: ClassVar[bool] = False
    container: str
    phase: str
    ok: bool
    description: str  # one line: how it ended

    def message(self) -> str:
        return self.description

    def severity(self) -> str:
        return "info" if self.ok else "warning"


@dataclass(frozen=True)
class BackupWritten(Event):
    name: ClassVar[str] = "backup.done"
    for_people: ClassVar[bool] = False
    backup_id: str
    source: str
    size: int
    seconds: float
    location: str

    def message(self) -> str:
        return f"backed up {self.source} as {self.backup_id} ({self.size} bytes)"


@dataclass(frozen=True)
class TransferProgress(Event):
    """A long transfer is still moving: about every `PROGRESS_EVERY` seconds."""

    name: ClassVar[str] = "transfer.progress"
    for_people: ClassVar[bool] = False
    what: str
    bytes: int
    seconds: float

    def message(self) -> str:
        return f"{self.what}: {self.bytes} bytes in {self.seconds:.0f} s"


PROGRESS_EVERY = 10.0  # seconds between progress events of a long transfer


def progress_reporter(emit: EventSink, what: str) -> Callable[[int], None]:
    """A progress callback (bytes moved) that emits a `TransferProgress` about every
    `PROGRESS_EVERY` seconds: logs show a long transfer moving when no progress bar does."""
    started = time.monotonic()
    state = {"bytes": 0, "last": started}

    def advance(amount: int) -> None:
        state["bytes"] += amount
        now = time.monotonic()
        if now - state["last"] >= PROGRESS_EVERY:
            state["last"] = now
            emit(TransferProgress(what, int(state["bytes"]), round(now - started, 1)))

    return advance


@dataclass(frozen=True)
class SourceSkipped(Event):
    name: ClassVar[str] = "backup.skipped"
    source: str
    reason: str

    def message(self) -> str:
        return f"skipped {self.source}: {self.reason}"


@dataclass(frozen=True)
class RestoreRecovered(Event):
    """An interrupted restore was finished or rolled back before anything else."""

    name: ClassVar[str] = "restore.recovered"
    level: ClassVar[str] = "warning"
    description: str

    def message(self) -> str:
        return self.description


@dataclass(frozen=True)
class SafetyBackupSaved(Event):
    name: ClassVar[str] = "restore.safety_backup"
    target: str
    backup_id: str

    def message(self) -> str:
        return f"saved the current contents of {self.target} as backup {self.backup_id}"


@dataclass(frozen=True)
class VerifyStarting(Event):
    name: ClassVar[str] = "verify.start"
    backup_id: str

    def message(self) -> str:
        return f"verifying backup {self.backup_id}"


@dataclass(frozen=True)
class Verified(Event):
    name: ClassVar[str] = "verify.done"
    for_people: ClassVar[bool] = False
    backup_id: str
    source: str
    ok: bool
    reason: str

    def message(self) -> str:
        return f"backup {self.backup_id}: {'verified' if self.ok else 'FAILED'}: {self.reason}"

    def severity(self) -> str:
        return "info" if self.ok else "error"


@dataclass(frozen=True)
class VerificationNotRecorded(Event):
    name: ClassVar[str] = "verify.not_recorded"
    level: ClassVar[str] = "warning"
    backup_id: str

    def message(self) -> str:
        return f"backup {self.backup_id} was removed meanwhile; not recorded"

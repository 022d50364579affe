"""The users of a source: finding its running containers, stopping them, starting them again."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opskit import errors, events, signals
from opskit.engine import orphans, stop_marks, volumes
from opskit.engine.client import Engine


def used_by_others(engine: Engine, data: volumes.DataSource) -> list[volumes.ContainerRef]:
    """Return the running containers (not opskit helpers) that use `data`.

    Raise `TargetInUse` if another opskit operation's helper is using it right now.
    """
    orphans.remove_orphaned_helpers(engine)
    stop_marks.restart_orphaned(engine)
    users = volumes.running_users(engine, data)
    if any(user.is_opskit_helper for user in users):
        raise errors.TargetInUse(
            f"another opskit operation is using {data.describe()}",
            "wait for it to finish and retry",
        )
    return users


@contextlib.contextmanager
def containers_stopped(
    engine: Engine,
    containers: list[volumes.ContainerRef],
    emit: events.EventSink,
    stopped_for: str = stop_marks.BACKUP,
) -> Iterator[list[volumes.ContainerRef]]:
    """Stop `containers` for the block; start them again afterwards, even on failure or
    Ctrl-C (an interrupt during the restarts waits for them), except after a failed swap.
    Each is marked first (stop_marks.py), so that a SIGKILL before the restart does not leave
    it down for good: `stopped_for` says whether the next run may start it ("backup")."""
    stopped: list[volumes.ContainerRef] = []
    marks: list[str] = []
    failed: list[str] = []
    try:
        if containers:
            emit(events.ContainersStopping(tuple(ref.name for ref in containers)))
        for ref in containers:
            marks.append(stop_marks.mark(engine, ref.id, ref.name, stopped_for))
            stopped.append(ref)  # first: an interrupt during the stop still restarts it
            volumes.stop_container(engine, ref)
        yield stopped
    except errors.SwapFailed:
        # Half swapped in: an app started now could read or write a mix of old and new data.
        if stopped:
            emit(events.ContainersLeftStopped(tuple(ref.name for ref in stopped)))
            stopped = []
        marks = []  # left stopped on purpose: the marks name them to the next run
        raise
    finally:
        if stopped:
            with signals.deferred():
                failed = volumes.start_containers(engine, stopped)
                for mark in marks:
                    stop_marks.unmark(engine, mark)
            started = [ref.name for ref in reversed(stopped) if ref.name not in failed]
            if started:
                emit(events.ContainersStarted(tuple(started)))
            if failed:
                emit(events.ContainersNotStarted(tuple(failed)))
    if failed:
        raise errors.EngineError(
            f"could not start {', '.join(failed)} again",
            "start them by hand: docker start " + " ".join(failed),
        )

"""What backup and restore share: notices for people, and stopping/restarting containers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from opskit import errors
from opskit.engine import orphans, volumes
from opskit.engine.client import Engine

# Actions never print: they hand one-line notices to the caller (the CLI prints them on stderr).
Notify = Callable[[str], None]


def quiet(message: str) -> None:
    """The default `Notify`: drop notices."""


def used_by_others(engine: Engine, data: volumes.DataSource) -> list[volumes.ContainerRef]:
    """Return the running containers (not opskit helpers) that use `data`.

    Raise `TargetInUse` if another opskit operation's helper is using it right now.
    """
    orphans.remove_orphaned_helpers(engine)
    users = volumes.running_users(engine, data)
    if any(user.is_opskit_helper for user in users):
        raise errors.TargetInUse(
            f"another opskit operation is using {data.describe()}",
            "wait for it to finish and retry",
        )
    return users


@contextlib.contextmanager
def containers_stopped(
    engine: Engine, containers: list[volumes.ContainerRef], notify: Notify
) -> Iterator[list[volumes.ContainerRef]]:
    """Stop `containers` for the block; always start them again afterwards, even on failure."""
    stopped: list[volumes.ContainerRef] = []
    failed: list[str] = []
    try:
        if containers:
            notify(f"stopping {', '.join(ref.name for ref in containers)}")
        for ref in containers:
            volumes.stop_container(engine, ref)
            stopped.append(ref)
        yield stopped
    finally:
        if stopped:
            failed = volumes.start_containers(engine, stopped)
            started = [ref.name for ref in stopped if ref.name not in failed]
            if started:
                notify(f"started {', '.join(started)} again")
    if failed:
        raise errors.EngineError(
            f"could not start {', '.join(failed)} again",
            "start them by hand: docker start " + " ".join(failed),
        )

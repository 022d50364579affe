"""What backup and restore share: notices for people, and stopping/restarting containers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from opskit import errors, signals
from opskit.engine import orphans, volumes
from opskit.engine.client import Engine
from opskit.storage.base import Storage

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


def check_store_outside(engine: Engine, storage: Storage, data: volumes.DataSource) -> None:
    """Raise `UsageError` if a local store lies inside `data` or holds it: a backup would
    archive itself, and a restore would wipe the store (and its own safety backup)."""
    store = storage.local_directory()
    data_directory = volumes.host_directory(engine, data)
    if store is None or data_directory is None:
        return
    if volumes.paths_overlap(os.path.realpath(store), os.path.realpath(data_directory)):
        raise errors.UsageError(
            f"the backup store {store} and {data.describe()} overlap",
            "keep backups outside the data they protect: choose another --to/--from",
        )


@contextlib.contextmanager
def containers_stopped(
    engine: Engine, containers: list[volumes.ContainerRef], notify: Notify
) -> Iterator[list[volumes.ContainerRef]]:
    """Stop `containers` for the block; start them again afterwards, even on failure or
    Ctrl-C (an interrupt during the restarts waits for them), except after a failed swap."""
    stopped: list[volumes.ContainerRef] = []
    failed: list[str] = []
    try:
        if containers:
            notify(f"stopping {', '.join(ref.name for ref in containers)}")
        for ref in containers:
            stopped.append(ref)  # first: an interrupt during the stop still restarts it
            volumes.stop_container(engine, ref)
        yield stopped
    except errors.SwapFailed:
        # Half swapped in: an app started now could read or write a mix of old and new data.
        if stopped:
            names = " ".join(ref.name for ref in stopped)
            notify(
                f"left {names} stopped: their data is half swapped in; start them once "
                f"`opskit volume recover` has finished it: docker start {names}"
            )
            stopped = []
        raise
    finally:
        if stopped:
            with signals.deferred():
                failed = volumes.start_containers(engine, stopped)
            started = [ref.name for ref in reversed(stopped) if ref.name not in failed]
            if started:
                notify(f"started {', '.join(started)} again")
            if failed:
                notify(
                    f"error: could not start {', '.join(failed)} again; start them by hand: "
                    f"docker start {' '.join(failed)}"
                )
    if failed:
        raise errors.EngineError(
            f"could not start {', '.join(failed)} again",
            "start them by hand: docker start " + " ".join(failed),
        )

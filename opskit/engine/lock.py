"""One lock per volume or host path, held by every backup and restore of it (and later the daemon).

The lock is a container created (never started) on the engine under a name derived from the
target. The engine keeps container names unique, so only one run can hold it: across processes,
across hosts that share the engine, and on remote engines. Its labels name the owner
(`host:pid:start-ticks`); a lock whose owner is known to be dead (this host, pid gone or reused)
is stale and is removed by the next run. Locks of other hosts' runs are never taken over: the
message says how to remove one by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import docker.errors

from opskit import errors, events, signals
from opskit.engine.client import Engine, cleanup_failed, translated_errors
from opskit.engine.helper import ensure_image
from opskit.engine.orphans import LOCK_LABEL, OWNER_LABEL
from opskit.engine.volumes import DataSource
from opskit.log import get_logger
from opskit.process_owner import owner_is_alive, owner_label

log = get_logger(__name__)

OPERATION_LABEL = "io.opskit.operation"
SINCE_LABEL = "io.opskit.since"
POLL_SECONDS = 0.5


class _HeldLocks(threading.local):
    """The locks this thread holds, with their depth: (engine address, lock name) -> depth."""

    def __init__(self) -> None:
        self.depths: dict[tuple[str, str], int] = {}


_held = _HeldLocks()


@dataclass(frozen=True)
class LockHolder:
    container_id: str
    owner: str  # host:pid:start-ticks
    operation: str
    since: str

    def describe(self) -> str:
        host, _, rest = self.owner.partition(":")
        pid = rest.partition(":")[0] or "?"
        return f"opskit {self.operation or 'run'} (pid {pid} on {host or '?'}, since {self.since})"


def lock_name(data: DataSource) -> str:
    """The lock container's name for `data`: readable, and unique per volume or path."""
    digest = hashlib.sha256(f"{data.kind}:{data.name}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", data.name.strip("/"))[:40].strip("._-") or "root"
    return f"opskit-lock-{slug}-{digest}"


@contextlib.contextmanager
def held(
    engine: Engine,
    data: DataSource,
    operation: str,
    image: str,
    wait_seconds: float = 0.0,
    emit: events.EventSink = events.discard,
) -> Iterator[None]:
    """Hold the lock of `data` for the block; wait up to `wait_seconds` for another run's.

    Raise `TargetLocked` if it stays held by a live run. The lock is released on any exit.
    """
    if data.kind == "path" and engine.shares_filesystem:
        # One lock per directory, however it is spelled (symlinks, `..`).
        data = DataSource("path", os.path.realpath(data.name))
    key = (engine.address, lock_name(data))
    if _held.depths.get(key):
        # Re-entered by the same run (a set restore holds its targets' locks while each
        # member's restore takes its own): only another thread or process must wait.
        _held.depths[key] += 1
        try:
            yield
        finally:
            _held.depths[key] -= 1
        return
    container_id = _acquire(engine, data, operation, image, wait_seconds, emit)
    _held.depths[key] = 1
    try:
        yield
    finally:
        del _held.depths[key]
        _release(engine, container_id)


def _acquire(
    engine: Engine,
    data: DataSource,
    operation: str,
    image: str,
    wait_seconds: float,
    emit: events.EventSink,
) -> str:
    ensure_image(engine, image)
    name = lock_name(data)
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    told = False
    while True:
        container_id = _try_create(engine, name, data, operation, image)
        if container_id is not None:
            log.debug("lock.acquired", lock=name)
            return container_id
        holder = _holder(engine, name)
        if holder is None:
            continue  # released between our create and our look: try again at once
        if not owner_is_alive(holder.owner):
            log.warning("removing a stale lock of a killed opskit", lock=name, owner=holder.owner)
            _remove(engine, holder.container_id)
            continue
        if time.monotonic() >= deadline:
            hint = (
                "wait for it to finish, or pass --wait SECONDS; if no such opskit runs any more, "
                f"remove the lock by hand: docker rm {name}"
            )
            raise errors.TargetLocked(
                f"{data.describe()} is locked by another {holder.describe()}", hint
            )
        if not told:
            emit(events.LockWaiting(holder.describe(), data.describe()))
            told = True
        time.sleep(POLL_SECONDS)


def _try_create(
    engine: Engine, name: str, data: DataSource, operation: str, image: str
) -> str | None:
    """Create the lock container; return its id, or None if the name is taken."""
    labels = {
        LOCK_LABEL: data.describe(),
        OWNER_LABEL: owner_label(),
        OPERATION_LABEL: operation,
        SINCE_LABEL: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Held signals: an interrupt between the engine's create and our knowing its id would
    # leave a lock that only the stale check could remove (and, for other hosts, nothing).
    with signals.deferred(reraise=False) as caught, translated_errors(f"locking {data.describe()}"):
        try:
            created = engine.client.api.create_container(
                image, command=["true"], name=name, labels=labels, network_disabled=True
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                created = None
            else:
                raise
    if caught.signal_name is not None:
        if created is not None:
            _remove(engine, str(created["Id"]))
        raise errors.Interrupted(caught.signal_name)
    return str(created["Id"]) if created is not None else None


def _holder(engine: Engine, name: str) -> LockHolder | None:
    try:
        with translated_errors("inspecting an opskit lock"):
            attrs = engine.client.api.inspect_container(name)
    except errors.NotFound:
        return None
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    if LOCK_LABEL not in labels:
        raise errors.TargetLocked(
            f"a container named {name} exists but is not an opskit lock",
            f"rename or remove it: docker rm {name}",
        )
    return LockHolder(
        container_id=attrs["Id"],
        owner=labels.get(OWNER_LABEL, ""),
        operation=labels.get(OPERATION_LABEL, ""),
        since=labels.get(SINCE_LABEL, "?"),
    )


def _release(engine: Engine, container_id: str) -> None:
    # A second Ctrl-C during the release must not leave the lock behind: finish, re-raise.
    try:
        _remove(engine, container_id)
    except errors.Interrupted:
        _remove(engine, container_id)
        raise


def _remove(engine: Engine, container_id: str) -> None:
    """Remove a lock container by id (never by name: that may be another run's by now)."""
    try:
        engine.client.api.remove_container(container_id, force=True)
        log.debug("lock.released", container=container_id[:12])
    except docker.errors.NotFound:
        pass
    except (docker.errors.DockerException, OSError) as exc:
        # The engine is gone: the lock stays, and the next run sees that its owner is dead.
        cleanup_failed(log, "lock.release_failed", exc, container=container_id[:12])

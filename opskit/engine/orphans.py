"""Finding and removing helper containers whose opskit process died (SIGKILL, OOM, power loss).

Each helper is labelled with its owner: host name, pid, and the process's start time (so a
reused pid is not mistaken for the owner). Ctrl-C and SIGTERM already remove helpers; this is
for the deaths nothing can catch.
"""

from __future__ import annotations

import docker.errors

from opskit.engine.client import Engine, translated_errors
from opskit.engine.volumes import HELPER_LABEL
from opskit.log import get_logger
from opskit.process_owner import owner_is_alive

log = get_logger(__name__)

OWNER_LABEL = "io.opskit.owner"
SCRATCH_LABEL = "io.opskit.scratch"  # a verify's scratch volume
LOCK_LABEL = "io.opskit.lock"  # a lock container (engine/lock.py); value: what is locked


def remove_orphaned_helpers(engine: Engine) -> list[str]:
    """Remove helpers of this host whose owner process is gone; return their ids."""
    with translated_errors("listing opskit helper containers"):
        summaries = engine.client.api.containers(all=True, filters={"label": HELPER_LABEL})
    removed = []
    for summary in summaries:
        owner = (summary.get("Labels") or {}).get(OWNER_LABEL, "")
        if not owner or owner_is_alive(owner):
            continue
        try:
            engine.client.api.remove_container(summary["Id"], force=True)
            removed.append(summary["Id"])
            log.warning(
                "removed a helper container left by a killed opskit", container=summary["Id"][:12]
            )
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.error(
                "could not remove an orphaned helper", container=summary["Id"][:12], error=str(exc)
            )
    remove_orphaned_locks(engine)
    remove_orphaned_scratch_volumes(engine)
    return removed


def remove_orphaned_locks(engine: Engine) -> None:
    """Remove lock containers of this host's dead runs, also of targets nobody touches again
    (the lock itself removes a stale lock when someone asks for it)."""
    with translated_errors("listing opskit locks"):
        summaries = engine.client.api.containers(all=True, filters={"label": LOCK_LABEL})
    for summary in summaries:
        owner = (summary.get("Labels") or {}).get(OWNER_LABEL, "")
        if owner and not owner_is_alive(owner):
            try:
                engine.client.api.remove_container(summary["Id"], force=True)
                log.warning("removed a lock left by a killed opskit", container=summary["Id"][:12])
            except docker.errors.APIError:
                pass  # gone already, or the engine refused: the lock's own check remains


def remove_orphaned_scratch_volumes(engine: Engine) -> list[str]:
    """Remove scratch volumes of verify runs of this host whose owner process is gone (SIGKILL
    mid-drill); return their names. Call it after the orphaned helpers are gone."""
    with translated_errors("listing opskit scratch volumes"):
        answer = engine.client.api.volumes(filters={"label": SCRATCH_LABEL})
    removed = []
    for volume in (answer or {}).get("Volumes") or []:
        owner = (volume.get("Labels") or {}).get(OWNER_LABEL, "")
        if not owner or owner_is_alive(owner):
            continue
        try:
            engine.client.api.remove_volume(volume["Name"], force=True)
            removed.append(volume["Name"])
            log.warning("removed a scratch volume left by a killed opskit", volume=volume["Name"])
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # still in use: the next run tries again
            log.error("could not remove an orphaned scratch volume", volume=volume["Name"],
                      error=str(exc))  # fmt: skip
    return removed

"""Marks of the containers an opskit run stopped, so that a run killed before it started them
again (SIGKILL, OOM, power loss) does not leave an application down for good.

A mark is a created, never started container, like a lock, labelled with the stopped
container's id, the owner process and what the stop was for. It is made before the stop and
removed after the start. The next opskit command on this host that stops or inspects users
(orphans.py) finds the marks of dead owners:
- after a backup or snapshot, whose data was never changed, it starts the container again;
- after a restore, it does not: the target may be half swapped in. It names the container and
  the way out instead, until the container runs again.
"""

from __future__ import annotations

import docker.errors

from opskit.engine.client import Engine, create_container, translated_errors
from opskit.engine.orphans import OWNER_LABEL
from opskit.log import get_logger
from opskit.process_owner import owner_is_alive, owner_label

log = get_logger(__name__)

STOPPED_LABEL = "io.opskit.stopped"  # value: the id of the container opskit stopped
STOPPED_NAME_LABEL = "io.opskit.stopped.name"
STOPPED_FOR_LABEL = "io.opskit.stopped.for"  # "backup" or "restore"
BACKUP, RESTORE = "backup", "restore"


def mark(engine: Engine, container_id: str, name: str, stopped_for: str) -> str:
    """Record that this process is about to stop `container_id`; return the mark's id."""
    with translated_errors(f"inspecting container {name}"):
        image = engine.client.api.inspect_container(container_id)["Image"]
    labels = {
        STOPPED_LABEL: container_id,
        STOPPED_NAME_LABEL: name,
        STOPPED_FOR_LABEL: stopped_for,
        OWNER_LABEL: owner_label(),
    }
    # The stopped container's own image: it is on the engine for sure. Never started.
    return create_container(
        engine, f"marking container {name} as stopped by opskit", image,
        command=["true"], entrypoint=["true"], labels=labels, network_disabled=True,
    )  # fmt: skip


def unmark(engine: Engine, mark_id: str) -> None:
    try:
        engine.client.api.remove_container(mark_id, force=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.DockerException, OSError) as exc:  # the next run tries again
        log.debug("stop mark not removed", mark=mark_id[:12], error=str(exc))


def restart_orphaned(engine: Engine) -> list[str]:
    """Handle the marks of dead owners on this engine (see the module's docstring); return the
    names of the containers started again."""
    with translated_errors("listing containers stopped by opskit"):
        marks = engine.client.api.containers(all=True, filters={"label": STOPPED_LABEL})
    started = []
    for summary in marks:
        labels = summary.get("Labels") or {}
        owner = labels.get(OWNER_LABEL, "")
        if not owner or owner_is_alive(owner):
            continue
        container_id = labels.get(STOPPED_LABEL, "")
        name = labels.get(STOPPED_NAME_LABEL, container_id[:12])
        try:
            running = engine.client.api.inspect_container(container_id)["State"]["Running"]
            if not running and labels.get(STOPPED_FOR_LABEL) != BACKUP:
                log.warning(
                    "container stopped by a killed opskit restore is still stopped",
                    container=name,
                    hint="finish the restore (opskit volume recover TARGET), then docker start "
                    + name,
                )
                continue
            if not running:
                engine.client.api.start(container_id)
                started.append(name)
                log.warning("started a container again that a killed opskit had stopped",
                            container=name)  # fmt: skip
        except docker.errors.NotFound:
            pass  # removed meanwhile: nothing to start
        except (docker.errors.DockerException, OSError) as exc:
            log.error("could not start a container a killed opskit had stopped",
                      container=name, error=str(exc))  # fmt: skip
            continue
        unmark(engine, summary["Id"])
    return started

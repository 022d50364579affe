"""Finding and removing helper containers whose opskit process died (SIGKILL, OOM, power loss).

Each helper is labelled with its owner: host name, pid, and the process's start time (so a
reused pid is not mistaken for the owner). Ctrl-C and SIGTERM already remove helpers; this is
for the deaths nothing can catch.
"""

from __future__ import annotations

import docker.errors
import structlog

from opskit.engine.client import Engine, translated_errors
from opskit.engine.volumes import HELPER_LABEL
from opskit.process_owner import owner_is_alive

log = structlog.get_logger(__name__)

OWNER_LABEL = "io.opskit.owner"


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
    return removed

"""`volume recover`: finish or roll back a restore that was killed, as the target's journal says.

Every backup and restore of a target does this first anyway; this command does only this, for
the operator who wants the target consistent now (the message of a failed swap names it).
"""

from __future__ import annotations

from dataclasses import dataclass

from opskit.actions.context import RunContext
from opskit.engine import helper, lock, volumes
from opskit.engine.stop_marks import RESTORE
from opskit.volume_ops import staging
from opskit.volume_ops.users import containers_stopped, used_by_others


@dataclass
class RecoverRequest:
    target: str  # a volume name or a host path
    helper_image: str | None = None
    docker_host: str | None = None
    wait_seconds: float = 0.0
    stop_containers: bool = False


@dataclass
class RecoverResult:
    target: str
    target_kind: str
    done: str | None  # what was finished or rolled back; None: nothing was pending

    def to_dict(self) -> dict:
        return {"target": self.target, "target_kind": self.target_kind, "done": self.done}


def run_recover(request: RecoverRequest, context: RunContext) -> RecoverResult:
    """Given a target, finish or roll back its interrupted restore under its lock. Return what
    was done. Raise `NotFound` if the target is missing, `TargetLocked` if a run holds it,
    `UnfinishedRestore` if its journal is invalid, `SwapFailed` if the swap cannot finish."""
    target = volumes.DataSource.parse(request.target)
    engine = context.engine(request.docker_host)
    volumes.check_source_exists(engine, target)
    image = context.helper_image(request.helper_image)
    with lock.held(engine, target, "recover", image, request.wait_seconds, context.emit):
        users = used_by_others(engine, target)  # raises if another opskit's helper does
        with (
            containers_stopped(
                engine, users if request.stop_containers else [], context.emit, RESTORE
            ),
            helper.helper_session(
                engine, image, target, staging.TARGET_MOUNT_POINT, read_only=False
            ) as session,
        ):
            running = bool(users) and not request.stop_containers
            done = staging.recover(session, target.describe(), users_running=running)
    return RecoverResult(target=target.name, target_kind=target.kind, done=done)

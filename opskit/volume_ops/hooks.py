"""Run a container's backup hook (its `opskit.backup.pre`/`.post` label) and report it."""

from __future__ import annotations

from opskit import events
from opskit.engine import client, hooks, volumes


def run_container_hook(
    engine: client.Engine,
    ref: volumes.ContainerRef,
    phase: str,
    environment: dict[str, str],
    emit: events.EventSink,
) -> hooks.HookResult | None:
    """Given a running container, run its `phase` hook ("pre" or "post") with `environment`.

    Return how it ended, or None if the container has no such hook. Raise `UsageError` if its
    timeout label is invalid (nothing is run then).
    """
    command = hooks.hook_command(ref.labels, phase)
    if command is None:
        return None
    timeout = hooks.hook_timeout(ref.labels)
    emit(events.HookStarting(ref.name, phase))
    ran = hooks.run_hook(
        engine, ref, phase, command, {hooks.PHASE_VARIABLE: phase, **environment}, timeout
    )
    emit(events.HookRan(ref.name, phase, ran.ok, ran.describe() if not ran.ok else
                        f"the {phase} hook of container {ref.name} succeeded"))  # fmt: skip
    return ran

"""Back up a set of existing sources: the one way sources are backed up (one source, several,
`--all`, a compose project's snapshot, a daemon job).

Every source under its lock, the users stopped once for the set (or per group of sources that
share a container), hooks around it, every source's outcome reported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from opskit import errors, events
from opskit.archive.pipeline import ProgressCallback
from opskit.engine import client, hooks, lock, volumes
from opskit.repository import catalog
from opskit.storage.base import Storage
from opskit.volume_ops.back_up import BackupOptions, Member, back_up_locked
from opskit.volume_ops.hooks import run_container_hook
from opskit.volume_ops.store_guard import check_store_outside
from opskit.volume_ops.users import containers_stopped, used_by_others

BACKED_UP, FAILED, SKIPPED = "backed-up", "failed", "skipped"


@dataclass
class SourceOutcome:
    """What became of one source of a run: backed up (with its record), failed or skipped."""

    source: volumes.DataSource
    status: str = FAILED
    record: catalog.BackupRecord | None = None
    reason: str = ""  # why it failed or was skipped (one line)
    error: errors.OpskitError | None = None  # the failure, for callers that re-raise it
    hooks: list[hooks.HookResult] = field(default_factory=list)
    not_attempted: bool = False  # failed because another member of its set failed

    def fail(self, error: errors.OpskitError) -> None:
        self.status, self.error, self.reason = FAILED, error, str(error)

    def to_dict(self) -> dict:
        return {
            "source": self.source.name,
            "kind": self.source.kind,
            "status": self.status,
            "reason": self.reason,
            "backup": self.record.to_dict() if self.record else None,
            "hooks": [hook.to_dict() for hook in self.hooks],
        }


@dataclass
class SetOutcome:
    """A run over several sources: each one's outcome, and the run's own errors (a post hook
    that failed, a container that did not start again), which do not undo any backup."""

    outcomes: list[SourceOutcome]
    errors: list[str] = field(default_factory=list)
    stopped_containers: list[str] = field(default_factory=list)
    hooks: list[hooks.HookResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(item.status != FAILED for item in self.outcomes)

    def backed_up(self) -> list[catalog.BackupRecord]:
        return [item.record for item in self.outcomes if item.record is not None]


def back_up_set(
    engine: client.Engine,
    storage: Storage,
    image: str,
    members: list[Member],
    options: BackupOptions,
    on_progress: ProgressCallback | None = None,
    emit: events.EventSink = events.discard,
    written: list[catalog.BackupRecord] | None = None,
) -> SetOutcome:
    """Given existing sources, back each up under its lock; the containers using them are
    stopped once for the whole set (with `options.stop_containers`) and started again in
    reverse order, even on failure.

    Pre hooks of the running users run before anything is stopped or read; post hooks after
    the restarts, with `OPSKIT_BACKUP_RESULT`. A pre hook's failure fails the sources its
    container mounts. Return every member's outcome; with `options.stop_at_first_failure`,
    the members after a failure are failed as "not attempted". Each stored record is also
    appended to `written` at once, so a caller can remove a set cut short by a signal.
    """
    outcomes = {member.source: SourceOutcome(member.source) for member in members}
    result = SetOutcome(list(outcomes.values()))

    def given_up() -> bool:
        return options.stop_at_first_failure and any(
            item.error is not None for item in outcomes.values()
        )

    def not_attempted(member: Member) -> None:
        outcomes[member.source].fail(
            errors.OpskitError(f"{member.source.describe()} was not backed up: another failed")
        )
        outcomes[member.source].not_attempted = True

    with contextlib.ExitStack() as locks:
        users: dict[volumes.DataSource, list[volumes.ContainerRef]] = {}
        live: list[Member] = []
        for member in members:
            if given_up():
                not_attempted(member)
                continue
            try:
                check_store_outside(engine, storage, member.source)
                locks.enter_context(lock.held(engine, member.source, "backup", image,
                                              options.wait_seconds, emit))  # fmt: skip
                users[member.source] = used_by_others(engine, member.source)
                live.append(member)
            except errors.OpskitError as error:
                outcomes[member.source].fail(error)
        hook_containers = _unique([ref for member in live for ref in users[member.source]])
        pre_hooks_run: set[str] = set()
        try:
            for ref in hook_containers:
                if given_up():
                    break
                pre_hooks_run.add(ref.id)  # first: a Ctrl-C inside it still runs the post hook
                _run_pre_hook(engine, ref, [m for m in live if ref in users[m.source]],
                              outcomes, result, emit)  # fmt: skip
            ready = [m for m in live if outcomes[m.source].error is None]
            # A snapshot stops its users once for the set; several sources stop theirs per
            # group of sources that share a container, so that no service is down for the
            # sum of all the backups and none is stopped twice.
            batches = [ready] if options.snapshot else _sharing_groups(ready, users)
            for batch in batches:
                _back_up_ready(engine, storage, image, batch, users, options, outcomes, result,
                               given_up, not_attempted, on_progress, emit,
                               written if written is not None else [])  # fmt: skip
        finally:
            # A post hook undoes what its pre hook did: never one whose pre hook did not run.
            post_hooks_due = [
                ref
                for ref in hook_containers
                if hooks.hook_command(ref.labels, "post")
                and (ref.id in pre_hooks_run or not hooks.hook_command(ref.labels, "pre"))
            ]
            for ref in post_hooks_due:
                mounted = [m for m in live if ref in users[m.source]]
                _run_post_hook(engine, ref, mounted, outcomes, result, emit)
    return result


def _sharing_groups(
    members: list[Member], users: dict[volumes.DataSource, list[volumes.ContainerRef]]
) -> list[list[Member]]:
    """Split `members` into groups whose sources share no running user, in their order."""
    groups: list[tuple[set[str], list[Member]]] = []
    for member in members:
        ids = {ref.id for ref in users[member.source]}
        joined = [group for group in groups if group[0] & ids]
        for group in joined:
            groups.remove(group)
            ids |= group[0]
        together = [m for group in joined for m in group[1]] + [member]
        groups.append((ids, sorted(together, key=members.index)))
    return sorted((group for _, group in groups), key=lambda group: members.index(group[0]))


def _back_up_ready(
    engine: client.Engine,
    storage: Storage,
    image: str,
    ready: list[Member],
    users: dict[volumes.DataSource, list[volumes.ContainerRef]],
    options: BackupOptions,
    outcomes: dict[volumes.DataSource, SourceOutcome],
    result: SetOutcome,
    given_up: Callable[[], bool],
    not_attempted: Callable[[Member], None],
    on_progress: ProgressCallback | None,
    emit: events.EventSink,
    written: list[catalog.BackupRecord],
) -> None:
    """Stop the users of `ready` once, back each up, start the users again."""
    if given_up():
        for member in ready:
            not_attempted(member)
        return
    to_stop = _unique([ref for member in ready for ref in users[member.source]])
    if options.stop_containers and ready:
        to_stop = _unique([*to_stop, *options.also_stop])
    if to_stop and not options.stop_containers:
        for member in ready:
            if users[member.source]:
                names = tuple(user.name for user in users[member.source])
                emit(events.UsedWhileRunning(member.source.describe(), names))
    attempted: list[Member] = []
    try:
        with containers_stopped(engine, to_stop if options.stop_containers else [],
                                emit) as stopped:  # fmt: skip
            result.stopped_containers += [ref.name for ref in stopped]
            for member in ready:
                attempted.append(member)
                if given_up():
                    not_attempted(member)
                    continue
                outcome = outcomes[member.source]
                member_users = users[member.source]
                try:
                    outcome.record = back_up_locked(
                        engine,
                        storage,
                        image,
                        member,
                        options,
                        stopped=[ref.name for ref in stopped if ref in member_users],
                        users_running=bool(member_users) and not options.stop_containers,
                        on_progress=on_progress,
                        emit=emit,
                    )
                    written.append(outcome.record)
                    outcome.status, outcome.error, outcome.reason = BACKED_UP, None, ""
                except errors.OpskitError as error:
                    outcome.fail(error)
    except errors.OpskitError as error:
        # Stopping failed (nothing of the rest was read), or starting again failed (the
        # backups are stored; the containers are not running).
        for member in ready:
            if member not in attempted:
                outcomes[member.source].fail(error)
        result.errors.append(str(error))


def _run_pre_hook(
    engine: client.Engine,
    ref: volumes.ContainerRef,
    mounted: list[Member],
    outcomes: dict[volumes.DataSource, SourceOutcome],
    result: SetOutcome,
    emit: events.EventSink,
) -> None:
    """Run `ref`'s pre hook, if it has one; its failure fails the sources it mounts."""
    try:
        ran = run_container_hook(engine, ref, "pre", {}, emit)
    except errors.UsageError as error:
        for member in mounted:
            outcomes[member.source].fail(error)
        return
    if ran is None:
        return
    result.hooks.append(ran)
    for member in mounted:
        outcomes[member.source].hooks.append(ran)
        if not ran.ok:
            outcomes[member.source].fail(
                errors.HelperFailed(f"{member.source.describe()} not backed up: {ran.describe()}")
            )


def _run_post_hook(
    engine: client.Engine,
    ref: volumes.ContainerRef,
    mounted: list[Member],
    outcomes: dict[volumes.DataSource, SourceOutcome],
    result: SetOutcome,
    emit: events.EventSink,
) -> None:
    """Run `ref`'s post hook with the outcome of the sources it mounts; its failure is an error
    of the run, never of a stored backup."""
    succeeded = all(outcomes[member.source].status == BACKED_UP for member in mounted)
    outcome = {hooks.RESULT_VARIABLE: "success" if succeeded else "failure"}
    try:
        ran = run_container_hook(engine, ref, "post", outcome, emit)
    except errors.UsageError as error:
        result.errors.append(str(error))
        return
    if ran is None:
        return
    result.hooks.append(ran)
    for member in mounted:
        outcomes[member.source].hooks.append(ran)
    if not ran.ok:
        result.errors.append(ran.describe())


def _unique(refs: list[volumes.ContainerRef]) -> list[volumes.ContainerRef]:
    """`refs` without repeats, in their first order."""
    seen: dict[str, volumes.ContainerRef] = {}
    for ref in refs:
        seen.setdefault(ref.id, ref)
    return list(seen.values())

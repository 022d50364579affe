"""Backup hooks: commands from a container's labels, run with `docker exec` in that container.

`opskit.backup.pre` runs before the container's volumes are read (e.g. a `pg_dump` into the
volume), `opskit.backup.post` after (it sees `OPSKIT_BACKUP_RESULT=success|failure`). Each runs
as `sh -c COMMAND` as the container's own user, with a timeout (`opskit.backup.timeout`
seconds, default 300). A hook that outlives its timeout is killed on a local engine.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

from opskit import errors
from opskit.engine.client import Engine, translated_errors
from opskit.engine.helper import BoundedOutput
from opskit.engine.volumes import ContainerRef
from opskit.log import get_logger

log = get_logger(__name__)

PRE_LABEL = "opskit.backup.pre"
POST_LABEL = "opskit.backup.post"
TIMEOUT_LABEL = "opskit.backup.timeout"
DEFAULT_TIMEOUT_SECONDS = 300.0
RESULT_VARIABLE = "OPSKIT_BACKUP_RESULT"
PHASE_VARIABLE = "OPSKIT_HOOK"
SHOWN_LINES = 3  # the hook's last output lines quoted in a failure message
# After a kill, how long the output stream may take to end.
KILL_GRACE_SECONDS = 5.0


@dataclass
class HookResult:
    """What one hook did: `exit_code` None if it could not run or did not end."""

    container: str
    phase: str  # "pre" or "post"
    command: str
    exit_code: int | None
    timed_out: bool
    output: str  # stdout and stderr, bounded
    seconds: float
    problem: str = ""  # why it could not run, if it could not

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.problem

    def last_lines(self, count: int = SHOWN_LINES) -> str:
        """The output's last `count` non-empty lines, joined by ` | ` (one line)."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return " | ".join(lines[-count:])

    def describe(self) -> str:
        """One line: what failed and the hook's last output lines."""
        what = f"{self.phase} hook of container {self.container}"
        if self.problem:
            reason = self.problem
        elif self.timed_out:
            reason = f"timed out after {self.seconds:.0f} s"
        else:
            reason = f"exited {self.exit_code}"
        shown = self.last_lines()
        return f"{what} {reason}" + (f": {shown}" if shown else "")

    def to_dict(self) -> dict:
        return {
            "container": self.container,
            "phase": self.phase,
            "command": self.command,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "output": self.last_lines(20),
            "problem": self.problem,
        }


def hook_command(labels: dict[str, str], phase: str) -> str | None:
    """Return the `phase` ("pre"/"post") hook command in `labels`, or None if there is none."""
    command = labels.get(PRE_LABEL if phase == "pre" else POST_LABEL, "").strip()
    return command or None


def hook_timeout(labels: dict[str, str]) -> float:
    """Return the hooks' timeout in seconds from `labels` (default 300).

    Raise `UsageError` if the label is not a positive number of seconds.
    """
    text = labels.get(TIMEOUT_LABEL)
    if text is None or not text.strip():
        return DEFAULT_TIMEOUT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise errors.UsageError(
            f"label {TIMEOUT_LABEL}={text!r} is not a positive number of seconds",
            "fix the container's label, e.g. opskit.backup.timeout=600",
        )
    return seconds


def run_hook(
    engine: Engine,
    container: ContainerRef,
    phase: str,
    command: str,
    environment: dict[str, str],
    timeout_seconds: float,
) -> HookResult:
    """Given a running container, run `sh -c command` in it with `environment` and wait up to
    `timeout_seconds`. Return what happened (a failure is a result, never raised); a hook that
    runs too long is killed when the engine is local."""
    started = time.monotonic()
    api = engine.client.api
    try:
        with translated_errors(f"running the {phase} hook in container {container.name}"):
            exec_id = api.exec_create(container.id, ["sh", "-c", command], environment=environment)[
                "Id"
            ]
    except errors.OpskitError as error:
        return HookResult(container.name, phase, command, None, False, "", 0.0, str(error))
    collected = BoundedOutput()
    stream_failure: list[BaseException] = []

    def read_output() -> None:
        try:
            for chunk in api.exec_start(exec_id, stream=True):
                collected.add(chunk if isinstance(chunk, bytes) else str(chunk).encode())
        except Exception as exc:  # noqa: BLE001 - reported as the hook's problem
            stream_failure.append(exc)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        reader.join(timeout_seconds)
    except BaseException:
        # Ctrl-C: the hook (a pg_dump, say) must not run on beside the post hook.
        _kill(engine, exec_id, container.name, container.id)
        raise
    timed_out = reader.is_alive()
    if timed_out:
        _kill(engine, exec_id, container.name, container.id)
        reader.join(KILL_GRACE_SECONDS)
    seconds = time.monotonic() - started
    exit_code = None if timed_out else _exit_code(engine, exec_id)
    problem = ""
    if stream_failure and not timed_out:
        problem = f"lost its output: {stream_failure[0]}"
    result = HookResult(
        container.name, phase, command, exit_code, timed_out, collected.text(), seconds, problem
    )
    log.info("hook.ran", container=container.name, phase=phase, exit_code=exit_code,
             timed_out=timed_out, seconds=round(seconds, 2))  # fmt: skip
    return result


def _exit_code(engine: Engine, exec_id: str) -> int | None:
    """The exec's exit code; the engine may record it a moment after the output ends."""
    for _ in range(100):
        with translated_errors("inspecting a hook"):
            state = engine.client.api.exec_inspect(exec_id)
        if state["ExitCode"] is not None or not state.get("Running"):
            return state["ExitCode"]
        time.sleep(0.01)
    return None


def _kill(engine: Engine, exec_id: str, container: str, container_id: str) -> None:
    """Kill a hook that ran past its timeout, and everything it started (the engine has no
    call for that: the exec's pid is on the engine's host, so only a local engine can)."""
    try:
        with translated_errors("inspecting a hook"):
            pid = int(engine.client.api.exec_inspect(exec_id).get("Pid") or 0)
    except errors.OpskitError:
        pid = 0
    if not engine.shares_filesystem or pid <= 0 or not _in_container(pid, container_id):
        # A remote engine, or opskit in a pid namespace of its own: that pid is not the hook.
        log.warning("hook.left_running", container=container, pid=pid)
        return
    killed = False
    for victim in [pid, *_descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
            killed = True
        except OSError:
            pass  # gone already, or not ours to kill
    log.info("hook.killed" if killed else "hook.left_running", container=container, pid=pid)


def _in_container(pid: int, container_id: str) -> bool:
    """Whether process `pid` (as this machine sees it) runs in the container: its cgroup
    names the container's id (cgroup v1 and v2, systemd and cgroupfs drivers alike)."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as cgroup:
            return container_id in cgroup.read()
    except OSError:
        return False


def _descendants(root: int) -> list[int]:
    """Every process below `root`, from /proc (children first found, then theirs)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    waiting = [root]
    while waiting:
        children = parents.get(waiting.pop(), [])
        found.extend(children)
        waiting.extend(children)
    return found

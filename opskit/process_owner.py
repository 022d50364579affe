"""Who owns a temporary thing (a helper container, a partial file): this host, pid and start time.

When opskit dies in a way nothing can catch (SIGKILL, OOM, power loss), the next run uses these
labels to recognise leftovers whose owner is gone and to remove them. The start time guards
against a reused pid.
"""

from __future__ import annotations

import os
import socket


def process_start_ticks(pid: int) -> str:
    """Return the process's start time in clock ticks since boot ('' if there is no such pid).

    A zombie keeps its start time: it names the same process until it is reaped, so a label
    taken just as a child exits still identifies it (whether it is alive is `owner_is_alive`'s
    question, not this one's).
    """
    status = _process_status(pid)
    return status[1] if status else ""


def _process_status(pid: int) -> tuple[str, str] | None:
    """Return (state letter, start ticks) from /proc/PID/stat, or None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The command name (field 2) may hold spaces, so split after its ')'.
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 20:
        return None
    # Field 3 is the state, field 22 the start time.
    return fields[0], fields[19]


def _host() -> str:
    """The host name and this process's pid namespace: an opskit in a container that shares the
    host's name (`--network host`) has pids of its own, and must not look like ours."""
    name = socket.gethostname().replace(".", "_").replace(":", "_").replace("+", "_")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return name
    return f"{name}@{namespace:x}"


def owner_label() -> str:
    """Return this process's owner label: `host:pid:start-ticks`."""
    pid = os.getpid()
    return f"{_host()}:{pid}:{process_start_ticks(pid)}"


def owner_token() -> str:
    """This process's owner label for use in a file name: `host+pid+start-ticks`."""
    return owner_label().replace(":", "+")


def owner_in_name(name_part: str) -> str:
    """The owner label at the start of `name_part` (`host+pid+ticks+rest`), or '' if none."""
    parts = name_part.split("+", 3)
    return ":".join(parts[:3]) if len(parts) == 4 else ""


def owner_is_alive(label: str) -> bool:
    """Whether the owner named by `label` still runs. Unknown and other hosts' owners count as
    alive: never remove what might be in use."""
    host, _, rest = label.partition(":")
    pid_text, _, start_ticks = rest.partition(":")
    if host != _host() or not pid_text.isdigit() or not start_ticks:
        return True
    status = _process_status(int(pid_text))
    # A zombie (Z) or dead (X) process has finished: only its exit status is left to collect.
    return status is not None and status[0] not in ("Z", "X") and status[1] == start_ticks

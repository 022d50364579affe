"""What the fault tests share: starting opskit, striking it when an observable event happens
(bytes written, a journal phase reached, a container or volume appearing), and checking what a
run left behind on the engine, in the store and in the target."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from opskit.engine.lock import LOCK_LABEL
from opskit.engine.orphans import SCRATCH_LABEL
from opskit.volume_ops.journal import JOURNAL_NAME
from tests.integration.opskit_cli import (
    HELPER_LABEL,
    bytes_below,
    describe,
    finish,
    run_opskit,
    volume_mountpoint,
)

MiB = 1 << 20
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def strike_when(
    process: subprocess.Popen[str],
    event: Callable[[], bool],
    signal_name: str,
    what: str,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Poll `event` every 2 ms; when it happens, send `signal_name` and return the finished
    process. Fail if opskit ended first: the fault was never injected, so nothing was tested."""
    deadline = time.monotonic() + timeout
    while not event():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            result = finish(process)
            pytest.fail(f"opskit ended (or hung) before {what}:\n{describe(result)}")
        time.sleep(0.002)
    process.send_signal(SIGNALS[signal_name])
    return finish(process, timeout=60)


def partial_bytes_at_least(store: Path, count: int) -> Callable[[], bool]:
    """A backup's archive is being written: its partial file in the store holds `count` bytes."""
    return lambda: bytes_below(store, ".opskit-partial-*") >= count


def staged_bytes_at_least(mountpoint: Path, count: int) -> Callable[[], bool]:
    """A restore is unpacking: its staging directory in the target holds `count` bytes."""
    return lambda: bytes_below(mountpoint, ".opskit-restore-*") >= count


def journal_phase(mountpoint: Path) -> str | None:
    try:
        return json.loads((mountpoint / JOURNAL_NAME).read_text())["phase"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def phase_reached(mountpoint: Path, phase: str) -> Callable[[], bool]:
    return lambda: journal_phase(mountpoint) == phase


def labelled_exists(client: docker.DockerClient, label: str) -> Callable[[], bool]:
    """A container with `label` exists (any state)."""
    return lambda: bool(client.api.containers(all=True, filters={"label": label}))


def expect_interrupted(result: subprocess.CompletedProcess[str], signal_name: str) -> None:
    """The message and exit code say the run was interrupted: non-zero, one `error:` line
    naming the signal, no traceback. SIGKILL leaves no message: only the exit status."""
    if signal_name == "SIGKILL":
        assert result.returncode == -signal.SIGKILL, describe(result)
        return
    assert signal_name in last_error_line(result), describe(result)


def last_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """A failed run: non-zero, no traceback, and stderr ending in an `error:` line; return it.
    Earlier lines are allowed: other tests' runs on this host log the clean-up of what their
    killed runs left, which any opskit command does."""
    assert result.returncode != 0, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), describe(result)
    return lines[-1]


def engine_leftovers(client: docker.DockerClient, *volumes: str) -> list[str]:
    """opskit's containers and volumes that concern `volumes`: helpers and check containers
    mounting them, their lock containers, and verify's scratch volumes of their backups."""
    found = []
    slugs = [volume.replace("/", "_") for volume in volumes]
    for summary in client.api.containers(all=True, filters={"label": HELPER_LABEL}):
        mounts = {mount.get("Name") or "" for mount in summary.get("Mounts") or []}
        if any(slug in name for slug in slugs for name in mounts):
            found.append(f"helper {summary['Id'][:12]} mounting {sorted(mounts - {''})}")
    for summary in client.api.containers(all=True, filters={"label": LOCK_LABEL}):
        locked = (summary.get("Labels") or {}).get(LOCK_LABEL, "")
        if any(locked == f"volume {volume}" for volume in volumes):
            found.append(f"lock of {locked}")
    answer = client.api.volumes(filters={"label": SCRATCH_LABEL}) or {}
    for volume in answer.get("Volumes") or []:
        if any(slug in volume["Name"] for slug in slugs):
            found.append(f"scratch volume {volume['Name']}")
    return found


def opskit_entries(client: docker.DockerClient, volume: str) -> list[str]:
    """Top-level entries of a volume named as opskit's own (journal, staging, old contents)."""
    mountpoint = volume_mountpoint(client, volume)
    return sorted(path.name for path in mountpoint.iterdir() if path.name.startswith(".opskit"))


def store_leftovers(store: Path) -> list[str]:
    """Hidden (partial) files in a local store."""
    if not store.is_dir():
        return []
    return sorted(str(path.relative_to(store)) for path in store.rglob(".*"))


def run_ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = run_opskit(*args, env=env)
    assert result.returncode == 0, describe(result)
    return result

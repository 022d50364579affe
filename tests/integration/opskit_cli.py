"""Running opskit as a user does (`python -m opskit ... --json` in a subprocess), and checking
what a run left behind: error lines, files in a backup directory, helper containers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

REPOSITORY = Path(__file__).resolve().parents[2]
HELPER_LABEL = "io.opskit.helper"
# A container that stops at once on SIGTERM (a plain `sleep` as PID 1 ignores it, and every
# `docker stop` would then wait the full 10 s grace period).
STOPPABLE_COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
# Warnings any command on the host may print, whatever it works on: it cleans up what killed
# runs left (helpers, locks, stopped apps), and names an app a killed restore left stopped. The
# fault tests leave such things while the other worker runs; checks of a run's own lines pass
# over these.
HOST_WIDE_WARNINGS = ("left by a killed opskit", "that a killed opskit had stopped",
                      "stopped by a killed opskit restore is still stopped")  # fmt: skip


def opskit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "opskit", *args]


def opskit_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = dict(os.environ)
    for name in ("OPSKIT_TARGET", "OPSKIT_CONFIG", "OPSKIT_TRANSFER", "OPSKIT_HELPER_IMAGE"):
        environment.pop(name, None)
    # No config file of the machine may change what the tests see.
    environment["OPSKIT_CONFIG"] = os.devnull
    environment.update(extra or {})
    return environment


def run_opskit(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run `python -m opskit ARGS` from the repository; return the finished process.

    Fail (rather than raise TimeoutExpired) when it runs longer than `timeout` seconds.
    """
    try:
        return subprocess.run(
            opskit_command(*args),
            cwd=REPOSITORY,
            env=opskit_environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise AssertionError(
            f"`opskit {' '.join(args)}` hung: still running after {timeout:.0f} s, killed\n{stderr}"
        ) from None


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"`{' '.join(result.args[2:])}` exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def run_json(*args: str, env: dict[str, str] | None = None) -> Any:
    """Run opskit with `--json`; fail unless it exits 0; return the parsed stdout document."""
    result = run_opskit(*args, "--json", env=env)
    assert result.returncode == 0, describe(result)
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        message = f"stdout is not one JSON document ({exc})\n{describe(result)}"
        raise AssertionError(message) from exc


def backup(source: str, to: Path | str, *options: str) -> dict[str, Any]:
    document = run_json("volume", "backup", source, "--to", str(to), *options)
    assert isinstance(document, dict), document
    return document


def restore(source: str, from_: Path | str, *options: str) -> dict[str, Any]:
    document = run_json("volume", "restore", source, "--from", str(from_), *options)
    assert isinstance(document, dict), document
    return document


def list_backups(from_: Path | str, *options: str) -> list[dict[str, Any]]:
    document = run_json("volume", "list", "--from", str(from_), *options)
    assert isinstance(document, list), document
    return document


def assert_failed_with_one_line(
    result: subprocess.CompletedProcess[str],
    *words: str,
    exit_code: int = 1,
    notices: tuple[str, ...] = (),
) -> str:
    """Check a failed run: `exit_code`, no traceback, and exactly one stderr line, which starts
    with `error:` and contains every one of `words` (case-insensitive).

    Lines starting with one of `notices` (e.g. "saved the current contents") may precede it.
    Return the error line.
    """
    assert result.returncode == exit_code, describe(result)
    assert "Traceback" not in result.stderr + result.stdout, describe(result)
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not any(warning in line for warning in HOST_WIDE_WARNINGS)
    ]
    others = [line for line in lines[:-1] if not line.startswith(notices or ("\0",))]
    assert lines and lines[-1].startswith("error: ") and not others, (
        f"expected one `error:` line on stderr\n{describe(result)}"
    )
    error_line = lines[-1]
    for word in words:
        assert word.lower() in error_line.lower(), f"{word!r} not in the error line\n{error_line}"
    return error_line


def files_in(directory: Path) -> list[str]:
    """Every file and directory below `directory` (hidden ones included), relative names."""
    if not directory.exists():
        return []
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def helpers_using(client: docker.DockerClient, data: str) -> list[str]:
    """Names of opskit helper containers (running or not) that mount volume or path `data`."""
    found = []
    for container in client.containers.list(
        all=True, filters={"label": HELPER_LABEL}, ignore_removed=True
    ):
        for mount in container.attrs.get("Mounts") or []:
            if data in (mount.get("Name"), mount.get("Source")):
                found.append(container.name)
    return found


def remove_helpers_using(client: docker.DockerClient, volumes: list[str], paths: list[str]) -> None:
    """Remove opskit helper containers left mounting one of `volumes` or a path below `paths`
    (only after a failed test: a passing one has checked that none is left)."""
    for container in client.containers.list(
        all=True, filters={"label": HELPER_LABEL}, ignore_removed=True
    ):
        for mount in container.attrs.get("Mounts") or []:
            source = mount.get("Source") or ""
            if mount.get("Name") in volumes or any(source.startswith(path) for path in paths):
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
                break


def started_at(client: docker.DockerClient, container_id: str) -> tuple[bool, str]:
    """Return (running, StartedAt) of a container."""
    state = client.containers.get(container_id).attrs["State"]
    return state["Running"], state["StartedAt"]


def docker_time(text: str) -> datetime:
    """Parse the engine's RFC 3339 times (nanoseconds, trailing zeros trimmed)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    assert match, f"not an engine time: {text!r}"
    fraction = (match.group(2) or "").ljust(6, "0")[:6]
    return datetime.fromisoformat(f"{match.group(1)}.{fraction}+00:00")


def wait_for_next_second() -> None:
    """Sleep into the next wall-clock second.

    Backups made within one second are not ordered by `latest` (see
    tests/unit/archive/test_catalog.py::test_find_record_latest_is_the_newest_within_one_second);
    tests that need two ordered backups wait, so they test what they name and nothing else.
    """
    time.sleep(1.05 - (time.time() % 1.0))


def volume_mountpoint(client: docker.DockerClient, name: str) -> Path:
    return Path(client.volumes.get(name).attrs["Mountpoint"])


def start_opskit(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python -m opskit ARGS` as a user would, without waiting for it."""
    return subprocess.Popen(
        opskit_command(*args),
        cwd=REPOSITORY,
        env=opskit_environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Wait for a started opskit; fail (killing it) if it runs past `timeout` seconds."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(
            f"opskit hung: still running after {timeout:.0f} s\n{stderr}"
        ) from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def bytes_below(directory: Path, pattern: str) -> int:
    """Bytes in the files below the entries of `directory` matching `pattern`."""
    total = 0
    for path in directory.glob(pattern) if directory.is_dir() else []:
        for file in [path, *path.rglob("*")] if path.is_dir() else [path]:
            try:
                total += file.stat().st_size if file.is_file() else 0
            except OSError:
                pass
    return total

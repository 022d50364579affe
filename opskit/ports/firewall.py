"""Detecting an active host firewall (ufw, firewalld) that Docker's published ports bypass."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from opskit.log import get_logger

log = get_logger(__name__)

FIREWALLS = ("ufw", "firewalld")

# Given argv, return (exit code, stdout); (127, "") when the program is missing.
CommandRunner = Callable[[Sequence[str]], tuple[int, str]]


def run_command(argv: Sequence[str]) -> tuple[int, str]:
    """Run a short status command; return (exit code, stdout). Never raises."""
    if shutil.which(argv[0]) is None:
        return 127, ""
    try:
        completed = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("firewall.probe_failed", argv=list(argv), error=str(exc))
        return 126, ""
    return completed.returncode, completed.stdout


def detect_active_firewalls(root: Path = Path("/"), run: CommandRunner = run_command) -> list[str]:
    """Return the names of the active host firewalls: "ufw", "firewalld", both or none.

    ufw: `ufw status` says "Status: active", or (when that needs root) /etc/ufw/ufw.conf has
    ENABLED=yes. firewalld: `firewall-cmd --state` says "running", or (when firewall-cmd cannot
    run) its pid file exists.
    `root` and `run` are there for tests.
    """
    active = []
    code, output = run(["ufw", "status"])
    if code == 0:
        if "status: active" in output.lower():
            active.append("ufw")
    elif _ufw_enabled_in_config(root / "etc/ufw/ufw.conf"):
        active.append("ufw")
    code, output = run(["firewall-cmd", "--state"])
    if code == 0 and output.strip() == "running":
        active.append("firewalld")
    elif code in (126, 127) and (root / "var/run/firewalld/firewalld.pid").exists():
        active.append("firewalld")
    log.debug("firewall.detected", active=active)
    return active


def _ufw_enabled_in_config(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "ENABLED":
            return value.strip().strip("\"'").lower() == "yes"
    return False

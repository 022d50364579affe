"""Detecting ufw and firewalld, with the commands and files they answer through faked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from opskit.ports.firewall import detect_active_firewalls, run_command


def runner(answers: dict[str, tuple[int, str]]):
    def run(argv: Sequence[str]) -> tuple[int, str]:
        return answers.get(argv[0], (127, ""))

    return run


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({}, []),
        ({"ufw": (0, "Status: active\n\nTo Action From\n")}, ["ufw"]),
        ({"ufw": (0, "Status: inactive\n")}, []),
        ({"firewall-cmd": (0, "running\n")}, ["firewalld"]),
        ({"firewall-cmd": (252, "not running\n")}, []),
        ({"ufw": (0, "Status: active"), "firewall-cmd": (0, "running")}, ["ufw", "firewalld"]),
    ],
)
def test_detect_by_status_commands(tmp_path: Path, answers, expected):
    assert detect_active_firewalls(tmp_path, runner(answers)) == expected


def test_ufw_config_is_read_when_status_needs_root(tmp_path: Path):
    (tmp_path / "etc/ufw").mkdir(parents=True)
    (tmp_path / "etc/ufw/ufw.conf").write_text("# comment\nENABLED=yes\nLOGLEVEL=low\n")
    needs_root = runner({"ufw": (1, "ERROR: You need to be root to run this script")})
    assert detect_active_firewalls(tmp_path, needs_root) == ["ufw"]


def test_ufw_config_disabled(tmp_path: Path):
    (tmp_path / "etc/ufw").mkdir(parents=True)
    (tmp_path / "etc/ufw/ufw.conf").write_text("ENABLED=no\n")
    assert detect_active_firewalls(tmp_path, runner({})) == []


def test_firewalld_pid_file_when_the_command_is_missing(tmp_path: Path):
    (tmp_path / "var/run/firewalld").mkdir(parents=True)
    (tmp_path / "var/run/firewalld/firewalld.pid").write_text("123\n")
    assert detect_active_firewalls(tmp_path, runner({})) == ["firewalld"]


def test_run_command_reports_missing_programs():
    assert run_command(["opskit-no-such-program-xyz"]) == (127, "")
    assert run_command(["true"])[0] == 0

"""The sample systemd units in systemd/ pass `systemd-analyze verify`, and say what opskit needs.

How they are verified: `systemd-analyze verify` checks that ExecStart's binary exists and that
every unit named in Requires= can be loaded, which a test machine cannot promise for
/usr/local/bin/opskit and docker.service. So each unit is copied into a temporary directory with
only the binary of ExecStart replaced by this venv's `opskit` script (the arguments stay as
written), next to a stub docker.service (systemd-analyze looks up dependencies in the verified
unit's own directory first). The template units are copied as opskit-backup@nightly.service and
.timer: a template cannot be verified without an instance name. `--man=no` skips looking up
Documentation= man pages. The test fails (never skips) if systemd-analyze is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opskit.engine import transfer

UNITS_DIRECTORY = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_BINARY = "/usr/local/bin/opskit"
# unit file in systemd/ -> the name it is verified under
UNITS = {
    "opskit.service": "opskit.service",
    "opskit-backup@.service": "opskit-backup@nightly.service",
    "opskit-backup@.timer": "opskit-backup@nightly.timer",
}
SERVICES = ("opskit.service", "opskit-backup@.service")
STUB_DOCKER = """[Unit]
Description=Stub of the Docker engine, for systemd-analyze verify only

[Service]
ExecStart=/bin/true
"""


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze is not installed: install systemd (Debian: apt-get install systemd) "
            "to verify the units in systemd/",
            pytrace=False,
        )
    return found


def venv_opskit() -> Path:
    script = Path(sys.executable).parent / "opskit"
    if not script.is_file():
        pytest.fail(
            f"no opskit script at {script}: run `pip install -e .` in the venv", pytrace=False
        )
    return script


@pytest.fixture(scope="module")
def verified_copies(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("units")
    for source, name in UNITS.items():
        text = (UNITS_DIRECTORY / source).read_text()
        (directory / name).write_text(text.replace(INSTALLED_BINARY, str(venv_opskit())))
    (directory / "docker.service").write_text(STUB_DOCKER)
    return directory


@pytest.mark.parametrize("name", UNITS.values())
def test_unit_passes_systemd_analyze_verify(verified_copies, name):
    completed = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(verified_copies / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=verified_copies,
    )
    output = completed.stdout + completed.stderr
    about_ours = [
        line
        for line in output.splitlines()
        if str(verified_copies) in line
        or any(unit in line for unit in [*UNITS.values(), "docker.service"])
    ]
    assert completed.returncode == 0, output
    assert about_ours == [], output


def directives(unit: str) -> dict[str, list[str]]:
    """Key -> every value it is given in `unit` (comments and sections ignored)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS_DIRECTORY / unit).read_text().splitlines():
        match = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def test_daemon_unit_runs_the_daemon_and_reloads_on_sighup():
    unit = directives("opskit.service")
    [exec_start] = unit["ExecStart"]
    assert exec_start.startswith(f"{INSTALLED_BINARY} ")
    assert " daemon " in f"{exec_start} "
    assert "--config /etc/opskit/opskit.yaml" in exec_start
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["KillMode"] == ["mixed"]
    assert int(unit["TimeoutStopSec"][0]) >= 300


def test_backup_unit_runs_the_job_named_by_the_instance():
    unit = directives("opskit-backup@.service")
    assert unit["Type"] == ["oneshot"]
    [exec_start] = unit["ExecStart"]
    assert exec_start.startswith(f"{INSTALLED_BINARY} ")
    assert exec_start.endswith(" run %i")


def test_timer_defaults_to_02_30_and_catches_up():
    timer = directives("opskit-backup@.timer")
    assert timer["OnCalendar"] == ["*-*-* 02:30:00"]
    assert timer["Persistent"] == ["true"]
    assert timer["RandomizedDelaySec"]


@pytest.mark.parametrize("unit", SERVICES)
def test_service_needs_docker_and_a_writable_fifo_directory_dockerd_sees(unit):
    """The FIFO transfer puts its directory under transfer.IO_PARENT_CANDIDATES; dockerd
    bind-mounts it into the helper, so it must be the unit's RuntimeDirectory (writable under
    ProtectSystem=strict, on the real /run, kept when one unit stops) and not in /tmp, which
    PrivateTmp makes invisible to dockerd."""
    found = directives(unit)
    assert found["Requires"] == ["docker.service"]
    assert "docker.service" in found["After"][0].split()
    runtime = [Path("/run") / name for name in found["RuntimeDirectory"][0].split()]
    assert any(candidate in runtime for candidate in transfer.IO_PARENT_CANDIDATES)
    assert all(not str(candidate).startswith("/tmp") for candidate in transfer.IO_PARENT_CANDIDATES)
    assert found["RuntimeDirectoryPreserve"] == ["yes"]
    assert found["ProtectSystem"] == ["strict"]
    assert "-/var/backups/opskit" in found["ReadWritePaths"]
    assert "-/var/lib/prometheus/node-exporter" in found["ReadWritePaths"]
    assert found["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert found["UMask"] == ["0077"]

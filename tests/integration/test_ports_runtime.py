"""The port audit against the real engine: containers with published ports, a compose-labelled
container whose ports drift from its file, a port collision, and the host network.

Every container is made through the `resources` fixture (removed in teardown), has a unique
name, and publishes free high ports; assertions look only at this test's containers, because
other tests may run containers on the same engine at the same time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from opskit.actions.audit_ports import AuditRequest, run_audit_ports
from opskit.log import configure_logging

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def logs_to_the_current_stderr():
    configure_logging(0)
    yield
    configure_logging(0)


def free_ports(count: int) -> list[int]:
    """Return `count` distinct TCP/UDP ports that are free right now (from the kernel's
    ephemeral range, so other tests picking fixed ports do not collide with them)."""
    ports: list[int] = []
    sockets = []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind(("0.0.0.0", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("0.0.0.0", port))
            except OSError:
                tcp.close()
                udp.close()
                continue
            sockets += [tcp, udp]
            ports.append(port)
    finally:
        for held in sockets:
            held.close()
    return ports


def audit(**request) -> object:
    return run_audit_ports(AuditRequest(runtime=True, firewalls=[], **request))


def mine(items, names: set[str]):
    return [item for item in items if item.container in names or item.service in names]


def write_compose(directory: Path, text: str) -> Path:
    path = directory / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def compose_labels(project: str, service: str, path: Path) -> dict[str, str]:
    return {
        "com.docker.compose.project": project,
        "com.docker.compose.service": service,
        "com.docker.compose.project.config_files": str(path),
        "com.docker.compose.project.working_dir": str(path.parent),
        "com.docker.compose.oneoff": "False",
    }


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment["OPSKIT_CONFIG"] = os.devnull
    return subprocess.run(
        [sys.executable, "-m", "opskit", "ports", "audit", *args],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env=environment,
        timeout=120,
    )


def test_runtime_mappings_of_real_containers(resources, unique_name: str):
    loopback, public, dns = free_ports(3)
    resources.container(
        name=unique_name,
        ports={"80/tcp": ("127.0.0.1", loopback), "81/tcp": public, "53/udp": dns},
    )
    result = audit()
    mappings = {
        (m.host_ip, m.host_port, m.container_port, m.protocol)
        for m in mine(result.mappings, {unique_name})
    }
    # Since Docker 20.10.6 `-p PORT:81` shows as 0.0.0.0 and ::; the audit reads one mapping.
    assert mappings == {
        ("127.0.0.1", loopback, 80, "tcp"),
        (None, public, 81, "tcp"),
        (None, dns, 53, "udp"),
    }
    assert len(mine(result.mappings, {unique_name})) == 3
    assert {m.source for m in mine(result.mappings, {unique_name})} == {"runtime"}
    findings = sorted((f.rule, f.host_port) for f in mine(result.findings, {unique_name}))
    assert findings == sorted([("all-interfaces", public), ("all-interfaces", dns)])


def test_compose_container_drifting_from_its_file(resources, unique_name: str, tmp_path: Path):
    declared, drifted, extra, api_port = free_ports(4)
    path = write_compose(
        tmp_path,
        f"""\
        name: {unique_name}
        services:
          web:
            image: busybox:stable
            ports:
              - "127.0.0.1:{declared}:80"
          api:
            image: busybox:stable
            ports:
              - "{api_port}:8080"
        """,
    )
    web = f"{unique_name}-web-1"
    api = f"{unique_name}-api-1"
    # web runs with another host port than its file says, and one port more.
    resources.container(
        name=web,
        labels=compose_labels(unique_name, "web", path),
        ports={"80/tcp": ("127.0.0.1", drifted), "81/tcp": ("127.0.0.1", extra)},
    )
    # api runs exactly as its file says (no host IP: both 0.0.0.0 and :: at runtime).
    resources.container(
        name=api, labels=compose_labels(unique_name, "api", path), ports={"8080/tcp": api_port}
    )

    result = audit(files=[path])
    drift = {
        (f.source, f.container, f.host_port, f.location.line if f.location else None)
        for f in result.findings
        if f.rule == "drift" and f.container in (web, api)
    }
    assert drift == {("runtime", web, drifted, 6), ("runtime", web, extra, 3)}
    changed = next(f for f in result.findings if f.rule == "drift" and f.host_port == drifted)
    assert f"127.0.0.1:{declared}->80/tcp" in changed.message
    # api matches its file: no drift, and the running copy neither collides with the file nor
    # repeats the file's all-interfaces finding.
    api_findings = [(f.rule, f.source) for f in result.findings if f.service == "api"]
    assert api_findings == [("all-interfaces", "compose")]

    # The engine alone, with no -f: the files are found through the containers' labels.
    runtime_only = audit()
    assert sorted(
        f.host_port for f in runtime_only.findings if f.rule == "drift" and f.container == web
    ) == sorted([drifted, extra])

    # As a user runs it: JSON on stdout, --fail-on medium trips on the drift.
    completed = run_cli("-f", str(path), "--format", "json", "--fail-on", "medium")
    assert completed.returncode == 1, completed.stderr
    document = json.loads(completed.stdout)
    runtime_mappings = [m for m in document["mappings"] if m["container"] == web]
    assert {(m["source"], m["host_port"], m["service"]) for m in runtime_mappings} == {
        ("runtime", drifted, "web"),
        ("runtime", extra, "web"),
    }
    assert any(f["rule"] == "drift" and f["host_port"] == extra for f in document["findings"])


def test_compose_port_already_taken_by_a_running_container(
    resources, unique_name: str, tmp_path: Path
):
    (taken,) = free_ports(1)
    resources.container(name=unique_name, ports={"80/tcp": ("127.0.0.1", taken)})
    path = write_compose(
        tmp_path,
        f"""\
        services:
          newcomer:
            ports: ["{taken}:80"]
        """,
    )
    result = audit(files=[path])
    [duplicate] = [
        f for f in result.findings if f.rule == "duplicate-host-port" and f.service == "newcomer"
    ]
    assert duplicate.source == "compose"
    assert duplicate.location.line == 3
    assert f"container {unique_name}" in duplicate.message


def test_host_network_container(resources, unique_name: str):
    resources.container(name=unique_name, network_mode="host")
    result = audit()
    [finding] = mine(result.findings, {unique_name})
    assert (finding.rule, finding.source) == ("host-network", "runtime")


def test_sarif_for_a_running_engine_is_valid_json(resources, unique_name: str, tmp_path: Path):
    (port,) = free_ports(1)
    resources.container(name=unique_name, ports={"5432/tcp": port})
    completed = run_cli("--runtime", "--format", "sarif")
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout)["runs"][0]["results"]
    ours = [r for r in results if r["properties"].get("container") == unique_name]
    assert {r["ruleId"] for r in ours} >= {"all-interfaces", "sensitive-port-public"}
    assert all(r["locations"][0]["logicalLocations"][0]["name"] == unique_name for r in ours)

"""Runtime mappings from engine data, and drift between compose files and running containers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from opskit.engine.published_ports import PortBinding, RunningContainer, container_from_summary
from opskit.ports import compose, drift, runtime
from opskit.ports.model import Mapping


def running(
    name: str = "demo-web-1",
    service: str | None = "web",
    bindings: list[tuple[str, int, int, str]] = (),
    network_mode: str = "demo_default",
    **extra,
) -> RunningContainer:
    return RunningContainer(
        id=f"id-{name}",
        name=name,
        network_mode=network_mode,
        bindings=tuple(PortBinding(*binding) for binding in bindings),
        compose_project="demo" if service else None,
        compose_service=service,
        **extra,
    )


def test_container_from_summary_reads_ports_and_labels():
    summary = {
        "Id": "abc123",
        "Names": ["/demo-web-1"],
        "HostConfig": {"NetworkMode": "demo_default"},
        "Ports": [
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
            {"PrivatePort": 9000, "Type": "tcp"},
        ],
        "Labels": {
            "com.docker.compose.project": "demo",
            "com.docker.compose.service": "web",
            "com.docker.compose.project.config_files": "/srv/a.yaml,/srv/b.yaml",
            "com.docker.compose.project.working_dir": "/srv",
            "com.docker.compose.oneoff": "False",
        },
    }
    container = container_from_summary(summary)
    assert container.name == "demo-web-1"
    assert container.bindings == (
        PortBinding("0.0.0.0", 8080, 80, "tcp"),
        PortBinding("::", 8080, 80, "tcp"),
    )
    assert container.exposed == ((9000, "tcp"),)
    assert container.compose_config_files == ("/srv/a.yaml", "/srv/b.yaml")
    assert (container.compose_project, container.compose_service) == ("demo", "web")
    assert container.compose_working_dir == "/srv"
    assert container.compose_oneoff is False


def test_container_from_summary_without_labels_or_ports():
    container = container_from_summary({"Id": "abcdef0123456789", "Names": ["/plain"]})
    assert container.bindings == ()
    assert container.compose_project is None
    assert container.network_mode == "default"


def test_dual_stack_bindings_become_one_all_interfaces_mapping():
    container = running(
        bindings=[
            ("0.0.0.0", 8080, 80, "tcp"),
            ("::", 8080, 80, "tcp"),
            ("127.0.0.1", 9090, 90, "tcp"),
            ("0.0.0.0", 53, 53, "udp"),
        ]
    )
    mappings = runtime.container_mappings(container)
    assert sorted((m.host_ip or "*", m.host_port, m.protocol) for m in mappings) == [
        ("*", 8080, "tcp"),
        ("0.0.0.0", 53, "udp"),
        ("127.0.0.1", 9090, "tcp"),
    ]
    assert {m.source for m in mappings} == {"runtime"}
    assert {m.container for m in mappings} == {"demo-web-1"}


def test_consecutive_runtime_ports_form_a_group():
    bindings = [("0.0.0.0", 9000 + i, 9000 + i, "tcp") for i in range(5)]
    bindings.append(("0.0.0.0", 9100, 80, "tcp"))
    mappings = runtime.container_mappings(running(bindings=bindings))
    sizes = sorted(m.group_size for m in mappings)
    assert sizes == [1, 5, 5, 5, 5, 5]
    assert len({m.group for m in mappings if m.group_size == 5}) == 1


def expected(host_ip=None, host_port=8080, container_port=80, protocol="tcp") -> Mapping:
    return Mapping("compose", "c.yaml", "web", None, host_ip, host_port, container_port, protocol)


def actual(host_ip=None, host_port=8080, container_port=80, protocol="tcp") -> Mapping:
    return Mapping("runtime", None, "web", "c", host_ip, host_port, container_port, protocol)


@pytest.mark.parametrize(
    ("wanted", "found", "realized"),
    [
        (expected(), actual(), True),
        (expected(), actual("0.0.0.0"), True),
        (expected("0.0.0.0"), actual(None), True),
        (expected("::"), actual("0.0.0.0"), True),
        (expected("127.0.0.1"), actual("127.0.0.1"), True),
        (expected("127.0.0.1"), actual(None), False),
        (expected(None), actual("127.0.0.1"), False),
        (expected(host_port=None), actual(host_port=32768), True),
        (expected(host_port="8000-8010"), actual(host_port=8005), True),
        (expected(host_port="8000-8010"), actual(host_port=8011), False),
        (expected(host_port=8080), actual(host_port=8081), False),
        (expected(container_port=80), actual(container_port=81), False),
        (expected(protocol="tcp"), actual(protocol="udp"), False),
    ],
)
def test_realizes(wanted, found, realized):
    assert drift.realizes(wanted, found) is realized


@pytest.fixture
def project(tmp_path: Path) -> compose.ComposeProject:
    path = tmp_path / "compose.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: demo
            services:
              web:
                ports: ["8080:80", "127.0.0.1:9090:90"]
              agent:
                network_mode: host
              worker:
                image: busybox
            """
        )
    )
    return compose.load_project([path], process_environment={})


def compare(project, containers):
    mappings = {c.id: runtime.container_mappings(c) for c in containers}
    return drift.compare_project(project, containers, mappings), mappings


def test_matching_container_has_no_drift_even_with_both_address_families(project):
    web = running(
        bindings=[
            ("0.0.0.0", 8080, 80, "tcp"),
            ("::", 8080, 80, "tcp"),
            ("127.0.0.1", 9090, 90, "tcp"),
        ]
    )
    result, mappings = compare(project, [web])
    assert result.findings == []
    assert result.covered_mappings == {id(m) for m in mappings[web.id]}


def test_changed_port_is_one_drift_finding_at_the_compose_line(project):
    web = running(bindings=[("0.0.0.0", 8081, 80, "tcp"), ("127.0.0.1", 9090, 90, "tcp")])
    result, _ = compare(project, [web])
    [finding] = result.findings
    assert finding.rule == "drift" and finding.severity == "medium"
    assert finding.source == "runtime" and finding.host_port == 8081
    assert finding.location.line == 4
    assert "where the compose file declares *:8080->80/tcp" in finding.message


def test_missing_and_extra_ports_are_drift(project):
    web = running(bindings=[("0.0.0.0", 8080, 80, "tcp"), ("0.0.0.0", 5000, 5000, "tcp")])
    result, _ = compare(project, [web])
    by_source = {f.source: f for f in result.findings}
    assert len(result.findings) == 2
    assert by_source["compose"].host_port == 9090
    assert by_source["compose"].message.endswith("does not publish it")
    assert by_source["runtime"].host_port == 5000
    assert by_source["runtime"].message.endswith("which its compose file does not declare")


def test_network_mode_drift_both_ways(project):
    agent = running(name="demo-agent-1", service="agent", network_mode="bridge")
    worker = running(name="demo-worker-1", service="worker", network_mode="host")
    result, _ = compare(project, [agent, worker])
    assert sorted(f.service for f in result.findings) == ["agent", "worker"]
    assert all(f.rule == "drift" for f in result.findings)


def test_host_network_declared_and_used_is_covered(project):
    agent = running(name="demo-agent-1", service="agent", network_mode="host")
    result, _ = compare(project, [agent])
    assert result.findings == []
    assert result.covered_host_network == {agent.id}


def test_service_gone_from_the_file_is_drift(project):
    ghost = running(name="demo-old-1", service="old", bindings=[("0.0.0.0", 7000, 7000, "tcp")])
    [finding] = compare(project, [ghost])[0].findings
    assert "no longer has" in finding.message


def test_oneoff_containers_are_not_compared(project):
    oneoff = running(name="demo-web-run-1", bindings=[], compose_oneoff=True)
    assert compare(project, [oneoff])[0].findings == []

"""run_audit_ports with the engine and firewall seams replaced by fakes (the real engine is in
tests/integration/test_ports_runtime.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from opskit import errors
from opskit.actions.audit_ports import (
    AuditRequest,
    AuditSeams,
    EngineUnreadable,
    run_audit_ports,
)
from opskit.config.ports_policy import PortsPolicy
from opskit.engine.published_ports import PortBinding, RunningContainer
from opskit.ports.model import Severity


def seams(
    containers=(), answers=True, firewalls=(), failure: Exception | None = None
) -> AuditSeams:
    def list_containers(docker_host):
        if failure is not None:
            raise failure
        return list(containers)

    return AuditSeams(
        answers=lambda docker_host: answers,
        list_containers=list_containers,
        detect_firewalls=lambda: list(firewalls),
    )


@pytest.fixture
def compose_file(tmp_path: Path) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: shop
            services:
              web:
                ports: ["80:80", "127.0.0.1:8080:8080"]
              db:
                ports: ["127.0.0.1:5432:5432"]
            """
        )
    )
    return path


def shop_container(compose_file: Path, name: str, service: str, bindings) -> RunningContainer:
    return RunningContainer(
        id=f"id-{name}",
        name=name,
        network_mode="shop_default",
        bindings=tuple(PortBinding(*binding) for binding in bindings),
        compose_project="shop",
        compose_service=service,
        compose_config_files=(str(compose_file),),
    )


def rules_of(result) -> list[tuple[str, str, str | None]]:
    return [(f.rule, f.source, f.service or f.container) for f in result.findings]


def test_nothing_to_audit_is_a_usage_error():
    with pytest.raises(errors.UsageError, match="nothing to audit"):
        run_audit_ports(AuditRequest(runtime=False), seams=seams())
    with pytest.raises(errors.UsageError, match="does not answer"):
        run_audit_ports(AuditRequest(), seams=seams(answers=False))


def test_explicit_runtime_without_engine_exits_2(compose_file: Path):
    failure = errors.EngineUnreachable("no Docker engine answers at unix:///nope.sock")
    with pytest.raises(EngineUnreadable) as raised:
        run_audit_ports(
            AuditRequest(files=[compose_file], runtime=True), seams=seams(failure=failure)
        )
    assert raised.value.exit_code == 2
    assert "--no-runtime" in str(raised.value)


def test_runtime_defaults_to_whether_an_engine_answers(compose_file: Path):
    quiet = run_audit_ports(AuditRequest(files=[compose_file]), seams=seams(answers=False))
    assert not quiet.runtime_checked
    loud = run_audit_ports(AuditRequest(files=[compose_file]), seams=seams(answers=True))
    assert loud.runtime_checked


def test_compose_findings_and_sorting(compose_file: Path):
    result = run_audit_ports(AuditRequest(files=[compose_file], runtime=False), seams=seams())
    assert rules_of(result) == [
        ("all-interfaces", "compose", "web"),
        ("privileged-host-port", "compose", "web"),
    ]
    assert result.project == "shop"
    assert len(result.mappings) == 3
    assert result.fails(Severity.low) and not result.fails(Severity.medium)


def test_firewalls_detected_or_given(compose_file: Path):
    detected = run_audit_ports(
        AuditRequest(files=[compose_file], runtime=False), seams=seams(firewalls=["ufw"])
    )
    assert ("firewall-bypass", "compose", "web") in rules_of(detected)
    assert detected.firewalls == ["ufw"]
    given = run_audit_ports(
        AuditRequest(files=[compose_file], runtime=False, firewalls=[]),
        seams=seams(firewalls=["ufw"]),
    )
    assert "firewall-bypass" not in [rule for rule, _, _ in rules_of(given)]


def test_allowlist_silences_and_stops_fail_on(compose_file: Path):
    policy = PortsPolicy.model_validate({"allow": [{"service": "web", "ports": [80]}]})
    result = run_audit_ports(
        AuditRequest(files=[compose_file], runtime=False), policy, seams=seams()
    )
    assert result.findings == []
    assert len(result.silenced) == 2
    assert not result.fails(Severity.info)


def test_running_copy_of_the_audited_project_is_reported_once(compose_file: Path):
    web = shop_container(
        compose_file,
        "shop-web-1",
        "web",
        [("0.0.0.0", 80, 80, "tcp"), ("::", 80, 80, "tcp"), ("127.0.0.1", 8080, 8080, "tcp")],
    )
    db = shop_container(compose_file, "shop-db-1", "db", [("127.0.0.1", 5432, 5432, "tcp")])
    result = run_audit_ports(
        AuditRequest(files=[compose_file], runtime=True), seams=seams([web, db])
    )
    # No drift, no duplicate with its own compose file, no second all-interfaces finding.
    assert rules_of(result) == [
        ("all-interfaces", "compose", "web"),
        ("privileged-host-port", "compose", "web"),
    ]
    assert sorted(m.source for m in result.mappings) == ["compose"] * 3 + ["runtime"] * 3


def test_foreign_container_on_a_compose_port_is_a_duplicate(compose_file: Path):
    squatter = RunningContainer(
        id="id-squatter",
        name="squatter",
        network_mode="bridge",
        bindings=(PortBinding("127.0.0.1", 5432, 5432, "tcp"),),
    )
    result = run_audit_ports(
        AuditRequest(files=[compose_file], runtime=True), seams=seams([squatter])
    )
    [duplicate] = [f for f in result.findings if f.rule == "duplicate-host-port"]
    assert (duplicate.source, duplicate.service) == ("compose", "db")
    assert "container squatter" in duplicate.message


def test_drift_of_a_running_project_found_from_its_labels(compose_file: Path):
    web = shop_container(compose_file, "shop-web-1", "web", [("0.0.0.0", 8081, 80, "tcp")])
    result = run_audit_ports(AuditRequest(runtime=True), seams=seams([web]))
    drift = [f for f in result.findings if f.rule == "drift"]
    assert len(drift) == 2  # 80 changed to 8081, 8080 missing
    assert {f.file for f in drift} == {str(compose_file)}


def test_unreadable_project_files_make_an_incomplete_audit_finding(tmp_path: Path):
    ghost = shop_container(tmp_path / "gone.yaml", "shop-web-1", "web", [])
    result = run_audit_ports(AuditRequest(runtime=True), seams=seams([ghost]))
    [finding] = result.findings
    assert finding.rule == "incomplete-audit"
    assert "gone.yaml is not readable here" in finding.message


def test_runtime_host_network_container(compose_file: Path):
    agent = RunningContainer(
        id="id-agent", name="agent", network_mode="host", exposed=((22, "tcp"),)
    )
    result = run_audit_ports(AuditRequest(runtime=True), seams=seams([agent]))
    [finding] = result.findings
    assert (finding.rule, finding.severity, finding.container) == ("host-network", "high", "agent")
    assert "SSH" in finding.message


def test_compose_host_network_service(tmp_path: Path):
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  agent:\n    network_mode: host\n    expose: [9100]\n")
    result = run_audit_ports(AuditRequest(files=[path], runtime=False), seams=seams())
    [finding] = result.findings
    assert (finding.rule, finding.severity, finding.location.line) == ("host-network", "medium", 3)
    assert "9100/tcp" in finding.message

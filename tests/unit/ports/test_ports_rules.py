"""The single-mapping rules, wide ranges, and collapsing a range's findings into one."""

from __future__ import annotations

import pytest

from opskit.ports import rules
from opskit.ports.model import RULE_IDS, Finding, Mapping, Severity


def mapping(
    host_ip: str | None = None,
    host_port: int | str | None = 8080,
    container_port: int = 80,
    protocol: str = "tcp",
    **extra,
) -> Mapping:
    return Mapping(
        source=extra.pop("source", "compose"),
        file=extra.pop("file", "compose.yaml"),
        service=extra.pop("service", "web"),
        container=extra.pop("container", None),
        host_ip=host_ip,
        host_port=host_port,
        container_port=container_port,
        protocol=protocol,
        **extra,
    )


def rule_ids(findings: list[Finding]) -> list[str]:
    return sorted(finding.rule for finding in findings)


def test_every_rule_id_has_a_rule():
    assert set(rules.RULES) == set(RULE_IDS)
    for rule in rules.RULES.values():
        assert rule.title and rule.why and rule.fix


@pytest.mark.parametrize("host_ip", [None, "0.0.0.0", "::"])
def test_all_interfaces_addresses(host_ip):
    assert rule_ids(rules.mapping_findings(mapping(host_ip))) == ["all-interfaces"]


@pytest.mark.parametrize("host_ip", ["127.0.0.1", "::1", "10.0.0.5"])
def test_specific_addresses_are_not_all_interfaces(host_ip):
    assert rules.mapping_findings(mapping(host_ip)) == []


@pytest.mark.parametrize(
    ("host_port", "container_port", "severity"),
    [
        (5432, 5432, Severity.high),
        (15432, 5432, Severity.high),
        (None, 6379, Severity.high),
        (2222, 22, Severity.high),
        (3389, 80, Severity.high),
        (2375, 2375, Severity.critical),
        (12376, 2376, Severity.critical),
        ("27000-27100", 27017, Severity.high),
    ],
)
def test_sensitive_port_public(host_port, container_port, severity):
    findings = rules.mapping_findings(mapping(None, host_port, container_port))
    [sensitive] = [f for f in findings if f.rule == "sensitive-port-public"]
    assert sensitive.severity == severity


def test_sensitive_port_on_loopback_is_fine():
    assert rules.mapping_findings(mapping("127.0.0.1", 5432, 5432)) == []


@pytest.mark.parametrize(
    ("host_port", "flagged"),
    [
        (80, True),
        (1023, True),
        (1024, False),
        (None, False),
        ("443-1100", True),
        ("1024-2000", False),
    ],
)
def test_privileged_host_port(host_port, flagged):
    findings = rules.mapping_findings(mapping("127.0.0.1", host_port))
    assert ("privileged-host-port" in rule_ids(findings)) is flagged


def test_firewall_bypass_only_for_all_interfaces():
    public = rules.mapping_findings(mapping(None), firewalls=["ufw", "firewalld"])
    assert rule_ids(public) == ["all-interfaces", "firewall-bypass", "firewall-bypass"]
    assert "ufw" in public[1].message
    assert rules.mapping_findings(mapping("127.0.0.1"), firewalls=["ufw"]) == []


def test_findings_carry_the_mapping_fields():
    [finding] = rules.mapping_findings(mapping(None, 8080, 80, "udp", container="c1"))
    assert finding.to_dict() == {
        "rule": "all-interfaces",
        "severity": "low",
        "message": "service web publishes *:8080->80/udp on all interfaces",
        "source": "compose",
        "file": "compose.yaml",
        "service": "web",
        "container": "c1",
        "host_ip": None,
        "host_port": 8080,
        "container_port": 80,
        "protocol": "udp",
    }


def test_wide_range_once_per_range_of_more_than_100():
    wide = [mapping(None, 9000 + i, 9000 + i, group="g1", group_size=101) for i in range(101)]
    narrow = [mapping(None, 7000 + i, 7000 + i, group="g2", group_size=100) for i in range(100)]
    findings = rules.wide_range_findings(wide + narrow)
    assert [(f.rule, f.host_port) for f in findings] == [("wide-range", 9000)]
    assert "101 ports" in findings[0].message


def test_collapse_groups_keeps_one_finding_per_rule_and_range():
    ranged = [mapping(None, 9000 + i, 9000 + i, group="g", group_size=3) for i in range(3)]
    single = mapping(None, 80, 80)
    findings = [f for m in [*ranged, single] for f in rules.mapping_findings(m)]
    collapsed = rules.collapse_groups(findings)
    assert [(f.rule, f.host_port) for f in collapsed] == [
        ("all-interfaces", 9000),
        ("all-interfaces", 80),
        ("privileged-host-port", 80),
    ]
    assert collapsed[0].message.endswith("(and 2 more ports of the same range)")


def test_severity_order():
    assert [str(s) for s in sorted(Severity, key=lambda s: s.rank)] == [
        "info",
        "low",
        "medium",
        "high",
        "critical",
    ]
    assert Severity.high.at_least(Severity.medium)
    assert Severity.high.at_least(Severity.high)
    assert not Severity.low.at_least(Severity.medium)


@pytest.mark.parametrize(
    ("host_ip", "host_port", "expected"),
    [
        (None, 8080, "*:8080->80/tcp"),
        ("127.0.0.1", 8080, "127.0.0.1:8080->80/tcp"),
        ("::1", 8080, "[::1]:8080->80/tcp"),
        (None, None, "*:?->80/tcp"),
        (None, "8000-8010", "*:8000-8010->80/tcp"),
    ],
)
def test_mapping_describe(host_ip, host_port, expected):
    assert mapping(host_ip, host_port).describe() == expected

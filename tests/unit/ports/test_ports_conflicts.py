"""duplicate-host-port: which host addresses, ports and protocols collide."""

from __future__ import annotations

import pytest

from opskit.ports import conflicts
from opskit.ports.model import Location, Mapping


def claim(
    service: str,
    host_ip: str | None,
    host_port: int | str | None = 8080,
    protocol: str = "tcp",
    source: str = "compose",
    container: str | None = None,
    line: int = 1,
) -> Mapping:
    return Mapping(
        source=source,  # type: ignore[arg-type]
        file="compose.yaml",
        service=service,
        container=container,
        host_ip=host_ip,
        host_port=host_port,
        container_port=80,
        protocol=protocol,
        location=Location("compose.yaml", line) if source == "compose" else None,
    )


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        (None, None, True),
        (None, "127.0.0.1", True),
        (None, "::1", True),
        ("0.0.0.0", "0.0.0.0", True),
        ("0.0.0.0", "127.0.0.1", True),
        ("0.0.0.0", "10.1.2.3", True),
        ("0.0.0.0", "::", False),
        ("0.0.0.0", "::1", False),
        ("::", "::1", True),
        ("::", "2001:db8::1", True),
        ("::", "127.0.0.1", False),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("10.0.0.1", "10.0.0.2", False),
        ("::1", "::1", True),
        ("::1", "2001:db8::1", False),
    ],
)
def test_addresses_overlap(first, second, overlap):
    assert conflicts.addresses_overlap(first, second) is overlap
    assert conflicts.addresses_overlap(second, first) is overlap


def test_two_services_on_the_same_port_collide():
    findings = conflicts.duplicate_findings(
        [claim("web", None, line=3), claim("api", "127.0.0.1", line=9)]
    )
    [finding] = findings
    assert (finding.rule, finding.severity, finding.service) == (
        "duplicate-host-port",
        "high",
        "api",
    )
    assert "service web" in finding.message and "compose.yaml line 3" in finding.message
    assert finding.related == (Location("compose.yaml", 3),)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (claim("web", None, protocol="tcp"), claim("dns", None, protocol="udp")),
        (claim("web", "127.0.0.1"), claim("api", "127.0.0.2")),
        (claim("web", "0.0.0.0"), claim("api", "::")),
        (claim("web", None, 8080), claim("api", None, 8081)),
        (claim("web", None, None), claim("api", None, None)),
        (claim("web", None, "8000-8100"), claim("api", None, 8080)),
    ],
)
def test_no_collision(first, second):
    assert conflicts.duplicate_findings([first, second]) == []


def test_one_service_twice_on_one_port_collides():
    findings = conflicts.duplicate_findings([claim("web", None), claim("web", None)])
    assert len(findings) == 1


def test_compose_side_of_a_compose_runtime_pair_is_reported():
    running = claim("legacy", None, source="runtime", container="legacy-1")
    wanted = claim("web", "0.0.0.0", line=4)
    [finding] = conflicts.duplicate_findings([running, wanted])
    assert finding.source == "compose"
    assert finding.location == Location("compose.yaml", 4)
    assert "container legacy-1" in finding.message


def test_exemption_skips_pairs():
    running = claim("web", None, source="runtime", container="p-web-1")
    wanted = claim("web", None)
    assert conflicts.duplicate_findings([wanted, running], lambda a, b: True) == []

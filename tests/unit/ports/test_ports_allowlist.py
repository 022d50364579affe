"""The allowlist: its config schema, and which findings an entry silences."""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit import errors
from opskit.config.load import load_config, parse_config
from opskit.config.ports_policy import AllowEntry, PortsPolicy
from opskit.ports.allowlist import allows, apply_allowlist
from opskit.ports.model import RULE_IDS, Finding, Severity

EXAMPLE = Path(__file__).parents[3] / "configs" / "ports-allowlist.example.yaml"


def finding(
    rule: str = "all-interfaces",
    service: str | None = "web",
    container: str | None = None,
    host_port: int | str | None = 80,
    container_port: int | None = 80,
    protocol: str | None = "tcp",
) -> Finding:
    return Finding(
        rule=rule,
        severity=Severity.low,
        message="m",
        source="compose",
        service=service,
        container=container,
        host_port=host_port,
        container_port=container_port,
        protocol=protocol,
    )


def test_example_config_validates_and_has_an_allowlist():
    policy = load_config(EXAMPLE).ports
    assert policy.allow
    assert any(entry.service == "web" and 443 in entry.ports for entry in policy.allow)


def test_rule_ids_in_the_config_schema_are_the_audit_rules():
    field = AllowEntry.model_fields["rules"]
    assert set(field.annotation.__args__[0].__args__) == set(RULE_IDS)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("ports:\n  allow:\n    - rules: [no-such-rule]\n", r"ports\.allow\[0\]\.rules\[0\]"),
        ("ports:\n  allow:\n    - reason: everything\n", "needs at least one of"),
        ("ports:\n  allow:\n    - service: web\n      ports: [80-]\n", "not a port"),
        ("ports:\n  allow:\n    - service: web\n      ports: [90-80]\n", "START <= END"),
        ("ports:\n  allow:\n    - service: web\n      colour: red\n", "colour"),
        ("ports:\n  deny: []\n", "deny"),
    ],
)
def test_invalid_allowlists_are_config_errors(section: str, message: str):
    with pytest.raises(errors.ConfigError, match=message):
        parse_config(section)


@pytest.mark.parametrize(
    ("entry", "target", "silenced"),
    [
        ({"service": "web", "ports": [80, 443]}, finding(), True),
        ({"service": "web", "ports": [80, 443]}, finding(host_port=8080), False),
        ({"service": "web", "ports": [80, 443]}, finding(service="api"), False),
        ({"service": "web-*"}, finding(service="web-blue"), True),
        ({"service": "web"}, finding(service=None, container="web"), False),
        ({"container": "traefik*"}, finding(service=None, container="traefik-1"), True),
        ({"rules": ["privileged-host-port"]}, finding(), False),
        ({"rules": ["all-interfaces"], "service": "web"}, finding(), True),
        ({"ports": ["8000-8100"]}, finding(host_port="8000-8010"), True),
        ({"ports": ["8000-8005"]}, finding(host_port="8000-8010"), False),
        ({"ports": [9000]}, finding(host_port=None, container_port=9000), True),
        ({"ports": [9000]}, finding(host_port=None, container_port=None), False),
        ({"ports": [80], "protocol": "udp"}, finding(), False),
    ],
)
def test_allows(entry: dict, target: Finding, silenced: bool):
    assert allows(AllowEntry.model_validate(entry), target) is silenced


def test_apply_allowlist_splits_kept_and_silenced():
    policy = PortsPolicy.model_validate({"allow": [{"service": "web", "ports": [80, 443]}]})
    kept, silenced = apply_allowlist(
        [finding(), finding(host_port=443), finding(service="db", host_port=5432)], policy.allow
    )
    assert [f.service for f in kept] == ["db"]
    assert [f.host_port for f in silenced] == [80, 443]

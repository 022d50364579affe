"""The port audit's data: severities, rule ids, mappings and findings."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class Severity(StrEnum):
    """How bad a finding is, from info to critical."""

    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANKS[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_SEVERITY_RANKS = {severity: rank for rank, severity in enumerate(Severity)}

RuleId = Literal[
    "all-interfaces",
    "sensitive-port-public",
    "privileged-host-port",
    "host-network",
    "duplicate-host-port",
    "drift",
    "firewall-bypass",
    "wide-range",
    "invalid-port-spec",
    "unset-variable",
    "incomplete-audit",
]
RULE_IDS: tuple[str, ...] = typing.get_args(RuleId)

Source = Literal["compose", "runtime"]

# The fields of a mapping in the JSON report; a finding has these after rule, severity, message.
MAPPING_FIELDS = (
    "source",
    "file",
    "service",
    "container",
    "host_ip",
    "host_port",
    "container_port",
    "protocol",
)

# The addresses that mean "every interface" of one family (None means both families).
ALL_INTERFACES_IPV4 = "0.0.0.0"
ALL_INTERFACES_IPV6 = "::"


@dataclass(frozen=True)
class Location:
    """Where in a compose file something is written (1-based line and column)."""

    file: str
    line: int
    column: int = 1


@dataclass(frozen=True)
class Mapping:
    """One published port: a host address and port forwarded to a container port.

    `host_ip` None means all interfaces. `host_port` is an int, an "A-B" string for a host pool
    (the engine picks one free port of the range), or None when the engine picks any port.
    The fields after `protocol` are for the audit itself and never appear in the JSON.
    """

    source: Source
    file: str | None
    service: str | None
    container: str | None
    host_ip: str | None
    host_port: int | str | None
    container_port: int
    protocol: str
    location: Location | None = field(default=None, compare=False)
    project: str | None = field(default=None, compare=False)
    # Mappings expanded from one range entry ("8000-8100:8000-8100") share a group and count.
    group: str | None = field(default=None, compare=False)
    group_size: int = field(default=1, compare=False)

    @property
    def on_all_interfaces(self) -> bool:
        return self.host_ip in (None, ALL_INTERFACES_IPV4, ALL_INTERFACES_IPV6)

    @property
    def fixed_host_port(self) -> int | None:
        """The host port when it is one known port (not a pool, not engine-chosen)."""
        return self.host_port if isinstance(self.host_port, int) else None

    def describe(self) -> str:
        """Return the mapping the way `docker ps` shows it: `127.0.0.1:8080->80/tcp`."""
        if self.host_ip is None:
            address = "*"
        elif ":" in self.host_ip:
            address = f"[{self.host_ip}]"
        else:
            address = self.host_ip
        host_port = "?" if self.host_port is None else self.host_port
        return f"{address}:{host_port}->{self.container_port}/{self.protocol}"

    def owner(self) -> str:
        """Return a short name for whoever declares the mapping, for messages."""
        if self.source == "runtime":
            if self.service:
                return f"container {self.container} (service {self.service})"
            return f"container {self.container}"
        return f"service {self.service}"

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in MAPPING_FIELDS}


@dataclass(frozen=True)
class Finding:
    """One problem the audit found, with the fields of the mapping (or service) it is about."""

    rule: str
    severity: Severity
    message: str
    source: Source
    file: str | None = None
    service: str | None = None
    container: str | None = None
    host_ip: str | None = None
    host_port: int | str | None = None
    container_port: int | None = None
    protocol: str | None = None
    location: Location | None = field(default=None, compare=False)
    related: tuple[Location, ...] = field(default=(), compare=False)
    group: str | None = field(default=None, compare=False)

    @classmethod
    def about(
        cls,
        rule: str,
        severity: Severity,
        message: str,
        mapping: Mapping,
        related: tuple[Location, ...] = (),
    ) -> Finding:
        """Return a finding that carries the fields of `mapping`."""
        return cls(
            rule=rule,
            severity=severity,
            message=message,
            source=mapping.source,
            file=mapping.file,
            service=mapping.service,
            container=mapping.container,
            host_ip=mapping.host_ip,
            host_port=mapping.host_port,
            container_port=mapping.container_port,
            protocol=mapping.protocol,
            location=mapping.location,
            related=related,
            group=mapping.group,
        )

    def to_dict(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in MAPPING_FIELDS}
        return {
            "rule": self.rule,
            "severity": str(self.severity),
            "message": self.message,
            **fields,
        }

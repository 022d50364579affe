"""Applying the config's allowlist: findings every given field of an entry matches are silenced."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Protocol

from opskit.ports.model import Finding


class AllowRule(Protocol):
    """What an allowlist entry offers (see `opskit.config.ports_policy.AllowEntry`)."""

    @property
    def rules(self) -> Sequence[str]: ...

    @property
    def service(self) -> str | None: ...

    @property
    def container(self) -> str | None: ...

    @property
    def protocol(self) -> str | None: ...

    def port_ranges(self) -> list[tuple[int, int]]: ...


def allows(entry: AllowRule, finding: Finding) -> bool:
    """Return whether `entry` silences `finding`."""
    if entry.rules and finding.rule not in entry.rules:
        return False
    if entry.service is not None and not _matches(entry.service, finding.service):
        return False
    if entry.container is not None and not _matches(entry.container, finding.container):
        return False
    if entry.protocol is not None and finding.protocol != entry.protocol:
        return False
    ranges = entry.port_ranges()
    if ranges and not _port_allowed(ranges, finding):
        return False
    return True


def _matches(pattern: str, value: str | None) -> bool:
    return value is not None and fnmatch.fnmatchcase(value, pattern)


def _port_allowed(ranges: list[tuple[int, int]], finding: Finding) -> bool:
    if isinstance(finding.host_port, int):
        low = high = finding.host_port
    elif isinstance(finding.host_port, str):
        start, end = finding.host_port.split("-", 1)
        low, high = int(start), int(end)
    elif finding.container_port is not None:
        low = high = finding.container_port
    else:
        return False
    return any(start <= low and high <= end for start, end in ranges)


def apply_allowlist(
    findings: Sequence[Finding], entries: Sequence[AllowRule]
) -> tuple[list[Finding], list[Finding]]:
    """Return (kept, silenced) findings."""
    kept: list[Finding] = []
    silenced: list[Finding] = []
    for finding in findings:
        if any(allows(entry, finding) for entry in entries):
            silenced.append(finding)
        else:
            kept.append(finding)
    return kept, silenced

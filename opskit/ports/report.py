"""The audit's JSON document and the order findings are reported in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opskit.ports.model import Finding, Mapping


def finding_order(finding: Finding) -> tuple[Any, ...]:
    """Sort key: worst first, then those with a file position in file order, then rule."""
    location = finding.location
    return (
        -finding.severity.rank,
        location is None,
        location.file if location else (finding.file or ""),
        location.line if location else 0,
        finding.rule,
        finding.service or "",
        finding.container or "",
        _port_order(finding.host_port),
        finding.container_port or 0,
    )


def mapping_order(mapping: Mapping) -> tuple[Any, ...]:
    return (
        mapping.source != "compose",
        mapping.file or "",
        mapping.service or "",
        mapping.container or "",
        mapping.protocol,
        _port_order(mapping.host_port),
        mapping.container_port,
    )


def _port_order(port: int | str | None) -> tuple[int, int]:
    if isinstance(port, int):
        return (0, port)
    if isinstance(port, str):
        return (1, int(port.split("-", 1)[0]))
    return (2, 0)


def json_document(mappings: Sequence[Mapping], findings: Sequence[Finding]) -> dict[str, Any]:
    """Return `{"mappings": [...], "findings": [...]}` with exactly the documented fields."""
    return {
        "mappings": [mapping.to_dict() for mapping in mappings],
        "findings": [finding.to_dict() for finding in findings],
    }

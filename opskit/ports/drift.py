"""The drift rule: running compose containers whose ports differ from their compose file.

A compose mapping is realized by a runtime mapping with the same container port and protocol,
a host address of the same kind (any all-interfaces address matches any other, since Docker
20.10.6 shows one port as both 0.0.0.0 and ::), and a host port that fits: equal, inside the
host pool, or anything when the engine picks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from opskit.ports.compose import ComposeProject, Service
from opskit.ports.model import Finding, Location, Mapping, Severity

if TYPE_CHECKING:
    from opskit.engine.published_ports import RunningContainer


@dataclass
class DriftResult:
    """Drift findings, and which runtime facts the compose file already accounts for."""

    findings: list[Finding] = field(default_factory=list)
    # id() of runtime mappings that realize a compose mapping of the compared project.
    covered_mappings: set[int] = field(default_factory=set)
    # ids of containers whose host network the compose file declares too.
    covered_host_network: set[str] = field(default_factory=set)


def realizes(expected: Mapping, actual: Mapping) -> bool:
    """Return whether runtime mapping `actual` is what compose mapping `expected` asks for."""
    if expected.container_port != actual.container_port or expected.protocol != actual.protocol:
        return False
    if expected.on_all_interfaces or actual.on_all_interfaces:
        if not (expected.on_all_interfaces and actual.on_all_interfaces):
            return False
    elif expected.host_ip != actual.host_ip:
        return False
    if expected.host_port is None:
        return True
    if isinstance(expected.host_port, str):
        start, end = (int(part) for part in expected.host_port.split("-", 1))
        return isinstance(actual.host_port, int) and start <= actual.host_port <= end
    return expected.host_port == actual.host_port


def compare_project(
    project: ComposeProject,
    containers: Sequence[RunningContainer],
    runtime_mappings: dict[str, list[Mapping]],
) -> DriftResult:
    """Given a compose project and its running containers, return the drift between them.

    `runtime_mappings` maps container id to the container's runtime mappings.
    """
    result = DriftResult()
    expected_by_service: dict[str, list[Mapping]] = {}
    for mapping in project.mappings():
        expected_by_service.setdefault(mapping.service or "", []).append(mapping)
    for container in containers:
        if container.compose_oneoff:
            continue
        service = project.services.get(container.compose_service or "")
        if service is None:
            result.findings.append(_unknown_service(project, container))
            continue
        runtime_host = container.network_mode == "host"
        if service.uses_host_network != runtime_host:
            result.findings.append(_network_drift(service, container))
        if runtime_host:
            if service.uses_host_network:
                result.covered_host_network.add(container.id)
            continue
        _compare_ports(
            service,
            container,
            expected_by_service.get(service.name, []),
            runtime_mappings.get(container.id, []),
            result,
        )
    return result


def _compare_ports(
    service: Service,
    container: RunningContainer,
    expected: list[Mapping],
    actual: list[Mapping],
    result: DriftResult,
) -> None:
    unmatched = list(actual)
    missing = []
    for wanted in expected:
        match = next((found for found in unmatched if realizes(wanted, found)), None)
        if match is None:
            missing.append(wanted)
            continue
        unmatched.remove(match)
        result.covered_mappings.add(id(match))
    for wanted in missing:
        changed = next(
            (
                found
                for found in unmatched
                if (found.container_port, found.protocol)
                == (wanted.container_port, wanted.protocol)
            ),
            None,
        )
        if changed is not None:
            unmatched.remove(changed)
            finding = Finding.about(
                "drift",
                Severity.medium,
                f"{changed.owner()} publishes {changed.describe()} where the compose file "
                f"declares {wanted.describe()}",
                changed,
            )
            result.findings.append(replace(finding, location=wanted.location))
            continue
        result.findings.append(
            Finding.about(
                "drift",
                Severity.medium,
                f"the compose file declares {wanted.describe()} for service {service.name}, "
                f"but running container {container.name} does not publish it",
                wanted,
            )
        )
    for extra in unmatched:
        finding = Finding.about(
            "drift",
            Severity.medium,
            f"{extra.owner()} publishes {extra.describe()}, which its compose file does "
            "not declare",
            extra,
        )
        result.findings.append(replace(finding, location=service.location))


def _network_drift(service: Service, container: RunningContainer) -> Finding:
    declared = service.network_mode or "the default network"
    location = service.network_mode_location or service.location
    message = (
        f"the compose file gives service {service.name} {declared}, but running container "
        f"{container.name} uses network mode {container.network_mode}"
    )
    return _container_drift(message, container, service.name, location)


def _unknown_service(project: ComposeProject, container: RunningContainer) -> Finding:
    location = Location(file=str(project.files[0]), line=1) if project.files else None
    message = (
        f"container {container.name} runs service {container.compose_service} of project "
        f"{container.compose_project}, which its compose file no longer has"
    )
    return _container_drift(message, container, container.compose_service, location)


def _container_drift(
    message: str, container: RunningContainer, service: str | None, location: Location | None
) -> Finding:
    return Finding(
        rule="drift",
        severity=Severity.medium,
        message=message,
        source="runtime",
        file=location.file if location else None,
        service=service,
        container=container.name,
        location=location,
    )

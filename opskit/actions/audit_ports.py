"""`ports audit`: read compose files and the engine's containers, apply the rules, return data."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from opskit import errors
from opskit.config.ports_policy import PortsPolicy
from opskit.engine import client
from opskit.engine.published_ports import RunningContainer, list_running_containers
from opskit.log import get_logger
from opskit.ports import allowlist, compose, conflicts, drift, firewall, report, rules, runtime
from opskit.ports.model import Finding, Mapping, Severity

log = get_logger(__name__)


class EngineUnreadable(errors.EngineUnreachable):
    """The engine could not be read for a runtime audit: unreadable input, exit code 2."""

    exit_code = errors.EXIT_USAGE


@dataclass
class AuditRequest:
    """What to audit. `runtime` None means: the engine too, when one answers."""

    files: list[Path] = field(default_factory=list)
    project_dir: Path | None = None
    env_files: list[Path] = field(default_factory=list)
    project_name: str | None = None
    runtime: bool | None = None
    docker_host: str | None = None
    # None: detect ufw/firewalld on this machine; a list: take it as the target host's.
    firewalls: list[str] | None = None


@dataclass
class AuditResult:
    """Every mapping seen, the findings left after the allowlist, and what was silenced."""

    mappings: list[Mapping]
    findings: list[Finding]
    silenced: list[Finding]
    runtime_checked: bool
    project: str | None
    firewalls: list[str]

    def fails(self, threshold: Severity) -> bool:
        """Return whether any remaining finding is at or above `threshold`."""
        return any(finding.severity.at_least(threshold) for finding in self.findings)


@dataclass
class AuditSeams:
    """The seams to the outside world; tests replace them."""

    answers: Callable[[str | None], bool] = client.engine_answers
    list_containers: Callable[[str | None], list[RunningContainer]] = list_running_containers
    detect_firewalls: Callable[[], list[str]] = firewall.detect_active_firewalls


def run_audit_ports(
    request: AuditRequest, policy: PortsPolicy | None = None, seams: AuditSeams | None = None
) -> AuditResult:
    """Given what to audit and the allowlist, return mappings and findings. Never prints.

    Raise `UsageError` when there is nothing to audit, `ConfigError` for unreadable compose or
    env files, `EngineUnreadable` when --runtime was asked for and no engine answers.
    """
    seams = seams or AuditSeams()
    policy = policy or PortsPolicy()
    project = None
    if request.files:
        project = compose.load_project(
            request.files, request.project_dir, request.env_files, request.project_name
        )
    use_runtime = _wants_runtime(request, seams)
    if project is None and not use_runtime:
        if request.runtime is False:
            raise errors.UsageError("nothing to audit: give compose files with -f, or --runtime")
        raise errors.UsageError(
            "nothing to audit: give compose files with -f, or start an engine "
            f"({client.engine_address(request.docker_host)} does not answer)"
        )
    containers = _list_containers(request, seams) if use_runtime else []
    firewalls = request.firewalls if request.firewalls is not None else seams.detect_firewalls()

    runtime_mappings = {
        container.id: runtime.container_mappings(container) for container in containers
    }
    compose_mappings = project.mappings() if project else []
    comparison = _compare_with_compose(project, containers, runtime_mappings)
    findings = _findings(
        project, compose_mappings, containers, runtime_mappings, comparison, firewalls
    )
    all_runtime = [mapping for mappings in runtime_mappings.values() for mapping in mappings]
    kept, silenced = allowlist.apply_allowlist(findings, policy.allow)
    kept.sort(key=report.finding_order)
    for finding in silenced:
        log.info("ports.finding_allowed", rule=finding.rule, message=finding.message)
    mappings = sorted(compose_mappings + all_runtime, key=report.mapping_order)
    return AuditResult(
        mappings=mappings,
        findings=kept,
        silenced=silenced,
        runtime_checked=use_runtime,
        project=project.name if project else None,
        firewalls=list(firewalls),
    )


def _findings(
    project: compose.ComposeProject | None,
    compose_mappings: list[Mapping],
    containers: Sequence[RunningContainer],
    runtime_mappings: dict[str, list[Mapping]],
    comparison: _Comparison,
    firewalls: Sequence[str],
) -> list[Finding]:
    """Apply every rule; a running copy of an audited compose mapping is reported only once,
    at its compose line."""
    all_runtime = [
        mapping for container in containers for mapping in runtime_mappings[container.id]
    ]
    uncovered_runtime = [
        mapping for mapping in all_runtime if id(mapping) not in comparison.drift.covered_mappings
    ]
    findings: list[Finding] = list(project.findings) if project else []
    findings.extend(comparison.drift.findings)
    for mapping in compose_mappings + uncovered_runtime:
        findings.extend(rules.mapping_findings(mapping, firewalls))
    findings.extend(rules.wide_range_findings(compose_mappings + uncovered_runtime))
    if project:
        findings.extend(_compose_host_network(project))
    findings.extend(
        _runtime_host_network(
            container
            for container in containers
            if container.id not in comparison.drift.covered_host_network
        )
    )

    def same_deployment(first: Mapping, second: Mapping) -> bool:
        # A running container of the audited project is replaced by `docker compose up`.
        pair = {first.source: first, second.source: second}
        return len(pair) == 2 and pair["runtime"].container in comparison.audited_container_names

    findings.extend(conflicts.duplicate_findings(compose_mappings + all_runtime, same_deployment))
    return rules.collapse_groups(findings)


def _wants_runtime(request: AuditRequest, seams: AuditSeams) -> bool:
    if request.runtime is not None:
        return request.runtime
    answers = seams.answers(request.docker_host)
    if not answers:
        log.info(
            "ports.runtime_skipped",
            reason="no engine answers",
            address=client.engine_address(request.docker_host),
        )
    return answers


def _list_containers(request: AuditRequest, seams: AuditSeams) -> list[RunningContainer]:
    try:
        return seams.list_containers(request.docker_host)
    except (errors.EngineUnreachable, errors.EngineError) as exc:
        raise EngineUnreadable(
            f"cannot audit the engine's ports: {exc.message}",
            "start the engine, set --docker-host, or use --no-runtime",
        ) from exc


@dataclass
class _Comparison:
    drift: drift.DriftResult
    audited_container_names: set[str]


def _compare_with_compose(
    project: compose.ComposeProject | None,
    containers: Sequence[RunningContainer],
    runtime_mappings: dict[str, list[Mapping]],
) -> _Comparison:
    """Compare every compose-managed container with its compose file.

    Containers whose config files include an audited file compare with the audited project;
    others with their own files, read from the paths in their labels when readable here.
    """
    result = drift.DriftResult()
    audited_names: set[str] = set()
    audited_files = project.resolved_files() if project else frozenset()
    groups: dict[tuple[str, tuple[str, ...]], list[RunningContainer]] = {}
    for container in containers:
        if container.compose_project is None or container.compose_oneoff:
            continue
        key = (container.compose_project, container.compose_config_files)
        groups.setdefault(key, []).append(container)
    for (project_name, config_files), members in groups.items():
        resolved = {str(Path(path).resolve()) for path in config_files}
        if project is not None and resolved & audited_files:
            compared = drift.compare_project(project, members, runtime_mappings)
            audited_names.update(container.name for container in members)
        else:
            other = _project_from_labels(project_name, config_files, members[0])
            if isinstance(other, Finding):
                result.findings.append(other)
                continue
            compared = drift.compare_project(other, members, runtime_mappings)
        result.findings.extend(compared.findings)
        result.covered_mappings |= compared.covered_mappings
        result.covered_host_network |= compared.covered_host_network
    return _Comparison(drift=result, audited_container_names=audited_names)


def _project_from_labels(
    project_name: str, config_files: tuple[str, ...], container: RunningContainer
) -> compose.ComposeProject | Finding:
    """Load a running project's compose files from its labels, or say why that cannot be done."""
    problem = None
    if not config_files:
        problem = "its containers carry no config_files label"
    else:
        missing = [path for path in config_files if not Path(path).is_file()]
        if missing:
            problem = f"compose file {missing[0]} is not readable here"
    if problem is None:
        env_files = [
            Path(path) for path in container.compose_environment_files if Path(path).is_file()
        ]
        working_dir = container.compose_working_dir
        try:
            return compose.load_project(
                [Path(path) for path in config_files],
                project_dir=Path(working_dir) if working_dir else None,
                env_files=env_files,
                project_name=project_name,
            )
        except errors.OpskitError as exc:
            problem = str(exc)
    log.warning("ports.drift_unchecked", project=project_name, problem=problem)
    return Finding(
        rule="incomplete-audit",
        severity=Severity.info,
        message=f"cannot check drift of compose project {project_name}: {problem}",
        source="runtime",
        file=config_files[0] if config_files else None,
        service=container.compose_service,
        container=container.name,
    )


def _declared_ports(service: compose.Service) -> list[tuple[int, str]]:
    declared = {(item.entry.target, item.entry.protocol) for item in service.ports}
    declared |= {(port, protocol) for port, protocol, _ in service.expose}
    return sorted(declared)


def _host_network_finding(subject: str, ports: list[tuple[int, str]], base: Finding) -> Finding:
    listed = ", ".join(f"{port}/{protocol}" for port, protocol in ports[:10])
    if len(ports) > 10:
        listed += f" and {len(ports) - 10} more"
    sensitive = [port for port, _ in ports if port in rules.SENSITIVE_PORTS]
    severity = Severity.high if sensitive else Severity.medium
    message = f"{subject} uses the host network: every port it listens on is open on the host"
    if listed:
        message += f" (it declares {listed})"
    if sensitive:
        message += f"; {rules.SENSITIVE_PORTS[sensitive[0]]} ({sensitive[0]}) among them"
    return replace(base, severity=severity, message=message)


def _compose_host_network(project: compose.ComposeProject) -> list[Finding]:
    findings = []
    for service in project.services.values():
        if not service.uses_host_network:
            continue
        location = service.network_mode_location or service.location
        base = Finding(
            rule="host-network",
            severity=Severity.medium,
            message="",
            source="compose",
            file=location.file if location else None,
            service=service.name,
            container=service.container_name,
            location=location,
        )
        findings.append(
            _host_network_finding(f"service {service.name}", _declared_ports(service), base)
        )
    return findings


def _runtime_host_network(containers: Iterable[RunningContainer]) -> list[Finding]:
    findings = []
    for container in containers:
        if container.network_mode != "host":
            continue
        base = Finding(
            rule="host-network",
            severity=Severity.medium,
            message="",
            source="runtime",
            file=container.compose_config_files[0] if container.compose_config_files else None,
            service=container.compose_service,
            container=container.name,
        )
        findings.append(
            _host_network_finding(f"container {container.name}", list(container.exposed), base)
        )
    return findings

"""Loading compose files like `docker compose -f a -f b`: env files, interpolation, merging.

Only what the audit needs is read: each service's `ports`, `expose`, `network_mode` and
`container_name`, plus the top-level `name`. Variables are interpolated in those fields only,
so a missing secret elsewhere in the file does not stop a port audit.

Merging follows compose: services merge by name; `ports` and `expose` lists are appended and
then made unique (a later entry with the same host IP, published port, target and protocol
replaces the earlier one in place); scalars are replaced; `!reset` removes a value and
`!override` replaces it instead of merging.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping as MappingType
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opskit import errors, untrusted
from opskit.log import get_logger
from opskit.ports import interpolate, spec, yaml12
from opskit.ports.model import Finding, Location, Mapping, Severity
from opskit.ports.yaml12 import RESET, LineDict, LineList, Override

log = get_logger(__name__)

# Real compose files are kilobytes. The bound keeps a wrong or hostile file from filling the
# memory before the YAML loader's own bound (`yaml12.MAX_NODES`) can apply.
MAX_COMPOSE_FILE_BYTES = 2 * untrusted.MIB
# Ports and exposed ports once ranges are expanded, over all files and services: one entry
# `0-65535:0-65535` is 65,536 of them, each some hundreds of bytes through the audit. A big
# real project has thousands (a media server's RTP range); the bound keeps a file of such
# entries, or an alias repeating one, from filling the memory.
MAX_EXPANDED_PORTS = 100_000


@dataclass
class PortDeclaration:
    """One canonical `ports:` entry of a service and where it is written."""

    entry: spec.PortEntry
    location: Location


@dataclass
class Service:
    """What a merged service says about its ports."""

    name: str
    location: Location | None = None
    ports: list[PortDeclaration] = field(default_factory=list)
    expose: list[tuple[int, str, Location]] = field(default_factory=list)
    network_mode: str | None = None
    network_mode_location: Location | None = None
    container_name: str | None = None

    @property
    def uses_host_network(self) -> bool:
        return self.network_mode == "host"


@dataclass
class ComposeProject:
    """The merged compose model of one or more files, with the findings made while reading it."""

    name: str
    files: list[Path]
    project_dir: Path
    services: dict[str, Service]
    findings: list[Finding] = field(default_factory=list)

    def resolved_files(self) -> frozenset[str]:
        return frozenset(str(path.resolve()) for path in self.files)

    def mappings(self) -> list[Mapping]:
        """Return one mapping per published port (none for `network_mode: host` services)."""
        result = []
        for service in self.services.values():
            if service.uses_host_network:
                continue
            for declaration in service.ports:
                entry = declaration.entry
                location = declaration.location
                group = None
                if entry.group_size > 1:
                    group = f"{location.file}:{location.line}:{location.column}"
                result.append(
                    Mapping(
                        source="compose",
                        file=location.file,
                        service=service.name,
                        container=service.container_name,
                        host_ip=entry.host_ip,
                        host_port=entry.host_port(),
                        container_port=entry.target,
                        protocol=entry.protocol,
                        location=location,
                        project=self.name,
                        group=group,
                        group_size=entry.group_size,
                    )
                )
        return result


def normalize_project_name(name: str) -> str:
    """Return `name` as compose normalizes project names: lowercase, [a-z0-9_-] only."""
    return re.sub(r"[^-_a-z0-9]", "", name.lower()).lstrip("-_")


def load_env_files(
    project_dir: Path,
    env_files: Sequence[Path],
    process_environment: MappingType[str, str] | None = None,
) -> dict[str, str]:
    """Return the variables of the env files (default: `.env` in the project dir, if any).

    Raise `ConfigError` if an explicitly named env file is missing or invalid.
    """
    if env_files:
        paths = list(env_files)
    else:
        default = project_dir / ".env"
        paths = [default] if default.is_file() else []
    values: dict[str, str] = {}
    for path in paths:
        values.update(interpolate.read_env_file(path, process_environment))
    return values


def load_project(
    files: Sequence[Path],
    project_dir: Path | None = None,
    env_files: Sequence[Path] = (),
    project_name: str | None = None,
    process_environment: MappingType[str, str] | None = None,
) -> ComposeProject:
    """Given compose files in `-f` order, return the merged project and its reading findings.

    The project dir defaults to the first file's directory; env files to its `.env`; the
    process environment overrides env-file values. Raise `ConfigError` if a file cannot be
    read or is not a compose file. Invalid port entries and unset variables become findings.
    """
    if not files:
        raise errors.UsageError("no compose file given")
    environment = dict(os.environ if process_environment is None else process_environment)
    directory = (project_dir or files[0].parent).absolute()
    dotenv = load_env_files(directory, env_files, environment)
    lookup = interpolate.environment_lookup(dotenv, environment)
    reader = _FileReader(lookup)
    services: dict[str, Service] = {}
    declared_name: str | None = None
    for path in files:
        document = reader.read(path)
        if "name" in document:
            declared_name = reader.interpolate_scalar(document, "name", str(path))
        _merge_services(services, reader.services(document, str(path)))
    for service in services.values():
        service.ports = _unique_ports(service.ports)
        service.expose = _unique_expose(service.expose)
    name = (
        project_name
        or environment.get("COMPOSE_PROJECT_NAME")
        or dotenv.get("COMPOSE_PROJECT_NAME")
        or declared_name
        or directory.name
    )
    return ComposeProject(
        name=normalize_project_name(str(name)),
        files=list(files),
        project_dir=directory,
        services=services,
        findings=reader.findings,
    )


class _FileReader:
    """Reads one compose file at a time into per-file service layers, collecting findings."""

    def __init__(self, lookup: interpolate.Lookup) -> None:
        self.lookup = lookup
        self.findings: list[Finding] = []
        self._reported_unset: set[tuple[str, int, str]] = set()
        self._expanded_ports = 0

    def read(self, path: Path) -> LineDict:
        text = untrusted.read_text_file(path, MAX_COMPOSE_FILE_BYTES, "compose file")
        document = yaml12.load_yaml(text, str(path))
        if document is None:
            return LineDict()
        if not isinstance(document, LineDict):
            raise errors.ConfigError(f"compose file {path}: expected a mapping at the top level")
        if "include" in document:
            self._incomplete(
                str(path),
                None,
                _location(str(path), document.key_positions["include"]),
                "`include:` is not followed; services from included files are not audited",
            )
        return document

    def interpolate_scalar(self, container: LineDict, key: str, file: str) -> str | None:
        value, _ = _unwrap(container[key])
        if value is None or value is RESET:
            return None
        location = _location(file, container.value_positions[key])
        if not isinstance(value, str):
            return str(value)
        try:
            return interpolate.interpolate(value, self.lookup)
        except interpolate.InterpolationError as exc:
            raise errors.ConfigError(f"{file} line {location.line}: {exc}") from exc

    def services(self, document: LineDict, file: str) -> Any:
        """Return the file's services as `{name: _Layer | RESET | Override}`, or RESET/Override."""
        raw = document.get("services")
        if raw is None:
            return {}
        if raw is RESET:
            return RESET
        raw, replace = _unwrap(raw)
        if not isinstance(raw, LineDict):
            raise errors.ConfigError(f"compose file {file}: `services` must be a mapping")
        layers: dict[str, Any] = {}
        for key, value in raw.items():
            name = str(key)
            service_location = _location(file, raw.key_positions[key])
            if value is RESET:
                layers[name] = RESET
                continue
            value, service_replace = _unwrap(value)
            if value is None:
                value = LineDict()
            if not isinstance(value, LineDict):
                raise errors.ConfigError(
                    f"compose file {file} line {service_location.line}: "
                    f"service {name} must be a mapping"
                )
            layer = self._layer(name, value, file, service_location)
            layers[name] = Override(layer) if service_replace else layer
        return Override(layers) if replace else layers

    def _layer(self, name: str, body: LineDict, file: str, location: Location) -> _Layer:
        layer = _Layer(name=name, location=location)
        if "extends" in body:
            self._incomplete(
                file,
                name,
                _location(file, body.key_positions["extends"]),
                f"service {name} uses `extends:`, which opskit does not follow; ports it "
                "inherits are not audited",
            )
        if "ports" in body:
            layer.ports = self._list_field(body, "ports", file, name, self._port_declarations)
        if "expose" in body:
            layer.expose = self._list_field(body, "expose", file, name, self._expose_entries)
        for key in ("network_mode", "container_name"):
            if key in body:
                value = body[key]
                if value is RESET:
                    setattr(layer, key, RESET)
                    continue
                text = self.interpolate_scalar(body, key, file)
                setattr(layer, key, text)
                if key == "network_mode":
                    layer.network_mode_location = _location(file, body.value_positions[key])
        return layer

    def _list_field(self, body: LineDict, key: str, file: str, service: str, parse: Any) -> Any:
        value = body[key]
        if value is RESET:
            return RESET
        value, replace = _unwrap(value)
        if value is None:
            value = LineList()
        if not isinstance(value, LineList):
            self._invalid(
                file,
                service,
                _location(file, body.value_positions[key]),
                f"service {service}: `{key}` must be a list",
            )
            value = LineList()
        parsed = parse(value, file, service)
        return Override(parsed) if replace else parsed

    def _port_declarations(self, items: LineList, file: str, service: str) -> list[Any]:
        declarations: list[PortDeclaration] = []
        for item, position in zip(items, items.positions, strict=True):
            location = _location(file, position)
            try:
                value = self._interpolate_entry(item, file, service, location)
                entries = spec.parse_ports_entry(value)
            except (spec.PortSpecError, interpolate.InterpolationError) as exc:
                self._invalid(
                    file, service, location, f"service {service}: invalid port {item!r}: {exc}"
                )
                continue
            self._count_expanded(len(entries), location)
            declarations.extend(PortDeclaration(entry, location) for entry in entries)
        return declarations

    def _expose_entries(self, items: LineList, file: str, service: str) -> list[Any]:
        exposed: list[tuple[int, str, Location]] = []
        for item, position in zip(items, items.positions, strict=True):
            location = _location(file, position)
            try:
                value = self._interpolate_entry(item, file, service, location)
                ports = spec.parse_expose_entry(value)
            except (spec.PortSpecError, interpolate.InterpolationError) as exc:
                self._invalid(
                    file, service, location, f"service {service}: invalid expose {item!r}: {exc}"
                )
                continue
            self._count_expanded(len(ports), location)
            exposed.extend((port, protocol, location) for port, protocol in ports)
        return exposed

    def _count_expanded(self, count: int, location: Location) -> None:
        self._expanded_ports += count
        if self._expanded_ports > MAX_EXPANDED_PORTS:
            raise errors.ConfigError(
                f"{location.file} line {location.line}: more than {MAX_EXPANDED_PORTS:,} "
                "ports once the port ranges are expanded",
                "is it the right file? opskit audits projects of fewer ports",
            )

    def _interpolate_entry(self, item: Any, file: str, service: str, location: Location) -> Any:
        if isinstance(item, str):
            return self._interpolate_text(item, file, service, location)
        if isinstance(item, LineDict):
            result = {}
            for key, value in item.items():
                if isinstance(value, str):
                    position = item.value_positions.get(key)
                    where = _location(file, position) if position else location
                    value = self._interpolate_text(value, file, service, where)
                result[key] = value
            return result
        return item

    def _interpolate_text(self, text: str, file: str, service: str, location: Location) -> str:
        def on_unset(variable: str) -> None:
            key = (file, location.line, variable)
            if key not in self._reported_unset:
                self._reported_unset.add(key)
                message = (
                    f"service {service}: variable {variable} is not set; "
                    "it reads as an empty string"
                )
                self._report("unset-variable", Severity.info, file, service, location, message)

        return interpolate.interpolate(text, self.lookup, on_unset)

    def _invalid(self, file: str, service: str, location: Location, message: str) -> None:
        self._report("invalid-port-spec", Severity.high, file, service, location, message)

    def _incomplete(self, file: str, service: str | None, location: Location, message: str) -> None:
        self._report("incomplete-audit", Severity.info, file, service, location, message)

    def _report(
        self,
        rule: str,
        severity: Severity,
        file: str,
        service: str | None,
        location: Location,
        message: str,
    ) -> None:
        """Log a warning and keep it as a finding, so the JSON report has it too."""
        log.warning(f"ports.{rule}", file=file, line=location.line, problem=message)
        self.findings.append(
            Finding(
                rule=rule,
                severity=severity,
                message=message,
                source="compose",
                file=file,
                service=service,
                location=location,
            )
        )


@dataclass
class _Layer:
    """One file's contribution to one service; a field left at None was not written."""

    name: str
    location: Location
    ports: Any = None
    expose: Any = None
    network_mode: Any = None
    network_mode_location: Location | None = None
    container_name: Any = None


def _merge_services(services: dict[str, Service], layers: Any) -> None:
    if layers is RESET:
        services.clear()
        return
    if isinstance(layers, Override):
        services.clear()
        layers = layers.value
    for name, layer in layers.items():
        if layer is RESET:
            services.pop(name, None)
            continue
        if isinstance(layer, Override):
            services.pop(name, None)
            layer = layer.value
        service = services.setdefault(name, Service(name=name, location=layer.location))
        service.ports = _merge_list(service.ports, layer.ports)
        service.expose = _merge_list(service.expose, layer.expose)
        if layer.network_mode is not None:
            service.network_mode = None if layer.network_mode is RESET else layer.network_mode
            service.network_mode_location = layer.network_mode_location
        if layer.container_name is not None:
            service.container_name = None if layer.container_name is RESET else layer.container_name


def _merge_list(current: list[Any], incoming: Any) -> list[Any]:
    if incoming is None:
        return current
    if incoming is RESET:
        return []
    if isinstance(incoming, Override):
        return list(incoming.value)
    return current + incoming


def _unique_ports(declarations: list[PortDeclaration]) -> list[PortDeclaration]:
    """Keep one entry per compose merge key; a later entry replaces the earlier in place."""
    result: list[PortDeclaration] = []
    index_by_key: dict[str, int] = {}
    for declaration in declarations:
        key = declaration.entry.merge_key()
        if key in index_by_key:
            result[index_by_key[key]] = declaration
        else:
            index_by_key[key] = len(result)
            result.append(declaration)
    return result


def _unique_expose(exposed: list[tuple[int, str, Location]]) -> list[tuple[int, str, Location]]:
    seen: dict[tuple[int, str], tuple[int, str, Location]] = {}
    for port, protocol, location in exposed:
        seen[(port, protocol)] = (port, protocol, location)
    return list(seen.values())


def _unwrap(value: Any) -> tuple[Any, bool]:
    """Return (the value, whether it carried `!override`)."""
    if isinstance(value, Override):
        return value.value, True
    return value, False


def _location(file: str, position: tuple[int, int]) -> Location:
    return Location(file=file, line=position[0], column=position[1])

"""Running containers' published ports, network mode and compose labels, as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opskit.engine import client
from opskit.log import get_logger

log = get_logger(__name__)

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_ENVIRONMENT_FILE = "com.docker.compose.project.environment_file"
LABEL_ONEOFF = "com.docker.compose.oneoff"


@dataclass(frozen=True)
class PortBinding:
    """One host binding as the engine reports it: `0.0.0.0:8080->80/tcp` is one, `[::]:...`
    another (since Docker 20.10.6 a port published without an IP shows both)."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: str


@dataclass(frozen=True)
class RunningContainer:
    """A running container's ports and the compose labels that tie it to a compose file."""

    id: str
    name: str
    network_mode: str
    bindings: tuple[PortBinding, ...] = ()
    exposed: tuple[tuple[int, str], ...] = ()
    compose_project: str | None = None
    compose_service: str | None = None
    compose_config_files: tuple[str, ...] = field(default=())
    compose_working_dir: str | None = None
    compose_environment_files: tuple[str, ...] = field(default=())
    compose_oneoff: bool = False


def list_running_containers(docker_host: str | None = None) -> list[RunningContainer]:
    """Return every running container of the engine with its published ports.

    Raise `EngineUnreachable` if no engine answers, `EngineError` if listing fails.
    """
    engine = client.connect(docker_host)
    try:
        with client.translated_errors("listing running containers"):
            summaries = engine.client.api.containers(filters={"status": "running"})
    finally:
        engine.close()
    containers = [container_from_summary(summary) for summary in summaries]
    log.debug("engine.containers_listed", count=len(containers))
    return containers


def container_from_summary(summary: dict[str, Any]) -> RunningContainer:
    """Given one item of the engine's `GET /containers/json`, return a `RunningContainer`."""
    labels = summary.get("Labels") or {}
    names = summary.get("Names") or []
    name = names[0].lstrip("/") if names else summary.get("Id", "")[:12]
    bindings = []
    exposed = []
    for port in summary.get("Ports") or []:
        container_port = int(port["PrivatePort"])
        protocol = str(port.get("Type") or "tcp")
        if port.get("PublicPort"):
            bindings.append(
                PortBinding(
                    host_ip=str(port.get("IP") or "0.0.0.0"),
                    host_port=int(port["PublicPort"]),
                    container_port=container_port,
                    protocol=protocol,
                )
            )
        else:
            exposed.append((container_port, protocol))
    return RunningContainer(
        id=summary.get("Id", ""),
        name=name,
        network_mode=str((summary.get("HostConfig") or {}).get("NetworkMode") or "default"),
        bindings=tuple(sorted(set(bindings), key=_binding_order)),
        exposed=tuple(sorted(set(exposed))),
        compose_project=labels.get(LABEL_PROJECT),
        compose_service=labels.get(LABEL_SERVICE),
        compose_config_files=_split_label(labels.get(LABEL_CONFIG_FILES)),
        compose_working_dir=labels.get(LABEL_WORKING_DIR) or None,
        compose_environment_files=_split_label(labels.get(LABEL_ENVIRONMENT_FILE)),
        compose_oneoff=(labels.get(LABEL_ONEOFF) or "").lower() == "true",
    )


def _split_label(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part for part in value.split(",") if part)


def _binding_order(binding: PortBinding) -> tuple[str, int, int, str]:
    return (binding.protocol, binding.host_port, binding.container_port, binding.host_ip)

"""Volumes and bind paths on the engine: what they are, who uses them, stopping their users."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import docker.errors

from opskit import errors
from opskit.engine.client import Engine, translated_errors
from opskit.engine.source import DataSource
from opskit.log import get_logger

log = get_logger(__name__)

HELPER_LABEL = "io.opskit.helper"


@dataclass
class VolumeInfo:
    name: str
    driver: str
    labels: dict[str, str] = field(default_factory=dict)
    mountpoint: str = ""  # on the engine's host


@dataclass(frozen=True)
class ContainerRef:
    id: str
    name: str
    is_opskit_helper: bool
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ContainerInfo:
    """A container (running or not) as a selection needs it: labels and what it mounts."""

    id: str
    name: str
    running: bool
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    volumes: tuple[str, ...] = ()  # names of the volumes it mounts
    binds: tuple[str, ...] = ()  # host paths it bind-mounts

    def ref(self) -> ContainerRef:
        return ContainerRef(self.id, self.name, HELPER_LABEL in self.labels, dict(self.labels))


def inspect_volume(engine: Engine, name: str) -> VolumeInfo:
    """Return the volume's info. Raise `NotFound` if it does not exist."""
    try:
        with translated_errors(f"inspecting volume {name}"):
            volume = engine.client.volumes.get(name)
    except errors.NotFound as exc:
        raise errors.NotFound(
            f"volume {name} does not exist", "check the name with: docker volume ls"
        ) from exc
    return VolumeInfo(
        name=name,
        driver=volume.attrs.get("Driver", "local"),
        labels=volume.attrs.get("Labels") or {},
        mountpoint=volume.attrs.get("Mountpoint") or "",
    )


def volume_exists(engine: Engine, name: str) -> bool:
    try:
        inspect_volume(engine, name)
    except errors.NotFound:
        return False
    return True


def create_volume(engine: Engine, name: str, labels: dict[str, str] | None = None) -> VolumeInfo:
    """Create a local volume `name` with `labels`; return its info."""
    with translated_errors(f"creating volume {name}"):
        engine.client.volumes.create(name=name, labels=labels or {})
    log.info("volume.created", volume=name)
    return inspect_volume(engine, name)


def remove_volume(engine: Engine, name: str) -> None:
    with translated_errors(f"removing volume {name}"):
        engine.client.volumes.get(name).remove()


def host_directory(engine: Engine, data: DataSource) -> str | None:
    """The directory on this machine that holds `data`'s files, if the engine shares our
    filesystem and we can tell (bind paths; volumes of the local driver)."""
    if not engine.shares_filesystem:
        return None
    if data.kind == "path":
        return data.name
    if not volume_exists(engine, data.name):
        return None
    return inspect_volume(engine, data.name).mountpoint or None


def check_source_exists(engine: Engine, source: DataSource) -> VolumeInfo | None:
    """Raise `NotFound` if the volume or host path is missing. Return the volume's info, if any."""
    if source.kind == "volume":
        return inspect_volume(engine, source.name)
    if engine.shares_filesystem and not os.path.isdir(source.name):
        raise errors.NotFound(
            f"path {source.name} does not exist or is not a directory",
            "give an existing absolute directory or a volume name",
        )
    return None


def running_users(engine: Engine, source: DataSource) -> list[ContainerRef]:
    """Return the running containers that mount `source` (a volume, or a path overlapping it)."""
    # One list call with the summaries (mounts and labels included): docker-py's high-level
    # list() inspects each container after listing, which fails when one goes away between.
    with translated_errors("listing containers"):
        summaries = engine.client.api.containers()
    users = []
    for summary in summaries:
        if any(_mount_uses(mount, source) for mount in summary.get("Mounts") or []):
            names = summary.get("Names") or [summary["Id"][:12]]
            users.append(
                ContainerRef(
                    id=summary["Id"],
                    name=names[0].lstrip("/"),
                    is_opskit_helper=HELPER_LABEL in (summary.get("Labels") or {}),
                    labels=dict(summary.get("Labels") or {}),
                )
            )
    return users


def list_containers(engine: Engine, label: str | None = None) -> list[ContainerInfo]:
    """Return every container, running or not (only those with `label`, `KEY` or `KEY=VALUE`,
    if given), newest first, with their labels and mounts."""
    filters = {"label": label} if label else None
    with translated_errors("listing containers"):
        summaries = engine.client.api.containers(all=True, filters=filters)
    found = []
    for summary in summaries:
        mounts = summary.get("Mounts") or []
        names = summary.get("Names") or [summary["Id"][:12]]
        found.append(
            ContainerInfo(
                id=summary["Id"],
                name=names[0].lstrip("/"),
                running=summary.get("State") == "running",
                labels=dict(summary.get("Labels") or {}),
                volumes=tuple(
                    mount["Name"]
                    for mount in mounts
                    if mount.get("Type") == "volume" and mount.get("Name")
                ),
                binds=tuple(
                    os.path.normpath(mount["Source"])
                    for mount in mounts
                    if mount.get("Type") == "bind" and mount.get("Source")
                ),
            )
        )
    return found


def list_volumes(engine: Engine) -> list[VolumeInfo]:
    """Return every volume on the engine, sorted by name."""
    with translated_errors("listing volumes"):
        answer = engine.client.api.volumes()
    found = [
        VolumeInfo(
            name=item["Name"],
            driver=item.get("Driver", "local"),
            labels=item.get("Labels") or {},
            mountpoint=item.get("Mountpoint") or "",
        )
        for item in (answer or {}).get("Volumes") or []
    ]
    return sorted(found, key=lambda volume: volume.name)


def mounts_source(container: ContainerInfo, source: DataSource) -> bool:
    """Whether `container` mounts the volume `source`, or a path overlapping the path `source`."""
    if source.kind == "volume":
        return source.name in container.volumes
    return any(paths_overlap(bind, os.path.normpath(source.name)) for bind in container.binds)


def _mount_uses(mount: dict, source: DataSource) -> bool:
    if source.kind == "volume":
        return mount.get("Type") == "volume" and mount.get("Name") == source.name
    if mount.get("Type") != "bind":
        return False
    return paths_overlap(os.path.normpath(mount.get("Source", "")), os.path.normpath(source.name))


def paths_overlap(first: str, second: str) -> bool:
    """Whether two absolute paths are the same directory or one lies inside the other."""

    def contains(outer: str, inner: str) -> bool:
        return inner == outer or inner.startswith(outer.rstrip("/") + "/")

    return contains(first, second) or contains(second, first)


def stop_container(engine: Engine, ref: ContainerRef) -> None:
    """Stop one container (docker's default grace period, then SIGKILL)."""
    with translated_errors(f"stopping container {ref.name}"):
        engine.client.containers.get(ref.id).stop()
    log.info("container.stopped", container=ref.name)


def start_containers(engine: Engine, containers: list[ContainerRef]) -> list[str]:
    """Start the containers again, in the reverse order of the list (the order they were
    stopped in: what stopped last starts first). Try every one; return the names that failed
    to start."""
    failed = []
    for ref in reversed(containers):
        try:
            engine.client.containers.get(ref.id).start()
            log.info("container.started", container=ref.name)
        except (docker.errors.DockerException, OSError) as exc:
            log.error("container.start_failed", container=ref.name, error=str(exc))
            failed.append(ref.name)
    return failed

"""Snapshot records: the set of backups one `volume snapshot` took of a compose project.

Stored as `snapshots/<ID>.json`, written only after every member's backup is stored, so a
snapshot record always names a complete set. Its members are ordinary backups whose records
carry `snapshot: ID` (the catalog's listing skips names with `/`, so this file is no backup).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from opskit import errors, untrusted
from opskit.repository import catalog
from opskit.storage.base import Storage

PREFIX = "snapshots/"
FORMAT_VERSION = 1
DEFAULT_TAG = "pre-upgrade"


@dataclass
class SnapshotMember:
    backup: str  # the member backup's id
    source: str
    kind: str  # "volume" or "path"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SnapshotRecord:
    """One snapshot: its members, what it skipped, and the project's compose files."""

    id: str
    project: str
    created: str
    tags: list[str]
    members: list[SnapshotMember]
    skipped: list[dict[str, str]] = field(default_factory=list)  # source, kind, reason
    compose_files: list[str] = field(default_factory=list)
    working_dir: str = ""
    stopped_containers: list[str] = field(default_factory=list)
    hostname: str = ""
    tool_version: str = ""
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["members"] = [member.to_dict() for member in self.members]
        return document


def record_name(snapshot_id: str) -> str:
    return f"{PREFIX}{snapshot_id}{catalog.METADATA_SUFFIX}"


def new_snapshot_id(project: str) -> str:
    """`<project slug>-<YYYYmmddTHHMMSSZ>-<4 hex>`, like a backup id."""
    return catalog.new_backup_id(catalog.source_slug(project), catalog.utc_now())


def write_snapshot(storage: Storage, record: SnapshotRecord) -> None:
    text = json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n"
    storage.write_bytes(record_name(record.id), text.encode())


def remove_emptied(storage: Storage, snapshot_ids: set[str]) -> list[str]:
    """Given the snapshots some removed backups belonged to, remove the record of each that no
    listed backup belongs to any more (its last member was pruned or deleted). Return those
    removed. A store whose listing has damaged files keeps every record (one may be a member).
    """
    if not snapshot_ids:
        return []
    listing = catalog.list_records(storage)
    if listing.problems:
        return []
    still_used = {record.snapshot for record in listing if record.snapshot}
    removed = []
    for snapshot_id in sorted(snapshot_ids - still_used):
        try:
            storage.remove(record_name(snapshot_id))
        except errors.NotFound:
            continue
        removed.append(snapshot_id)
    return removed


def parse_snapshot(data: object) -> SnapshotRecord:
    """Given a snapshot document, return its record. Raise ValueError with a printable reason
    if it is not a valid one (it comes from a store: every name in it is checked)."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for name in ("id", "project", "created", "tags", "members"):
        if name not in data:
            raise ValueError(f"missing {name}")
    if not isinstance(data["id"], str) or not catalog.SAFE_ID.fullmatch(data["id"]):
        raise ValueError("id is not a safe name")
    if not isinstance(data["format"] if "format" in data else 1, int):
        raise ValueError("format is not a number")
    if data.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(f"written by a newer opskit (format {data['format']})")
    members = data["members"]
    if not isinstance(members, list) or not members:
        raise ValueError("members is not a non-empty list")
    parsed = []
    for member in members:
        if not (
            isinstance(member, dict)
            and isinstance(member.get("backup"), str)
            and catalog.SAFE_ID.fullmatch(member["backup"])
            and isinstance(member.get("source"), str)
            and member["source"]
            and member.get("kind") in catalog.KINDS
        ):
            raise ValueError("a member is not {backup: safe id, source, kind: volume|path}")
        parsed.append(SnapshotMember(member["backup"], member["source"], member["kind"]))
    skipped = data.get("skipped", [])
    if not isinstance(skipped, list):
        raise ValueError("skipped is not a list")
    text_lists = ("tags", "compose_files", "stopped_containers")
    for name in text_lists:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"{name} is not a list of strings")
    return SnapshotRecord(
        id=data["id"],
        project=str(data["project"]),
        created=str(data["created"]),
        tags=list(data["tags"]),
        members=parsed,
        skipped=[
            {key: text for key, text in item.items() if isinstance(text, str)}
            for item in skipped
            if isinstance(item, dict)
        ],
        compose_files=list(data.get("compose_files") or []),
        working_dir=str(data.get("working_dir") or ""),
        stopped_containers=list(data.get("stopped_containers") or []),
        hostname=str(data.get("hostname") or ""),
        tool_version=str(data.get("tool_version") or ""),
        format=int(data.get("format", FORMAT_VERSION)),
    )


def read_snapshot(storage: Storage, snapshot_id: str) -> SnapshotRecord:
    """Return snapshot `snapshot_id` of the store.

    Raise `NotFound` if there is none, `MetadataCorrupt` if its record is damaged.
    """
    shown = untrusted.printable(snapshot_id)
    if not re.fullmatch(catalog.SAFE_ID, snapshot_id):
        raise errors.UsageError(f"{shown!r} is not a snapshot id")
    try:
        raw = storage.read_bytes(record_name(snapshot_id))
    except errors.NotFound:
        raise errors.NotFound(
            f"no snapshot {shown} in {untrusted.printable(storage.url)}",
            "the ids are the snapshot field of: opskit volume list --from ...",
        ) from None
    if len(raw) > catalog.MAX_METADATA_BYTES:
        raise errors.MetadataCorrupt(f"the record of snapshot {shown} is too large")
    try:
        record = parse_snapshot(json.loads(raw))
    except (ValueError, RecursionError) as exc:
        reason = untrusted.printable(str(exc))
        raise errors.MetadataCorrupt(
            f"the record of snapshot {shown} is damaged: {reason}"
        ) from exc
    if record.id != snapshot_id:
        raise errors.MetadataCorrupt(f"the record of snapshot {shown} holds snapshot {record.id}")
    return record

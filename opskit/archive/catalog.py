"""Backup records: the metadata file beside each archive, naming, and finding backups in a store.

A backup `ID` is stored as two objects: `ID.tar.zst` (or .tar.gz/.tar) and `ID.json`. The JSON is
written last, so a backup exists exactly when its JSON does: listing reads only JSON files and can
never show a partial archive.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from opskit import errors
from opskit.archive.pipeline import SUFFIXES
from opskit.storage.base import Storage, check_name

log = structlog.get_logger(__name__)

METADATA_SUFFIX = ".json"
SAFETY_TAG = "pre-restore"  # the tag of the backup a forced restore takes of what it replaces
FORMAT_VERSION = 1


@dataclass
class BackupRecord:
    """Everything known about one backup; this is the metadata file and the `--json` output."""

    id: str
    source: str
    kind: str  # "volume" or "path"
    created: str  # UTC ISO 8601, e.g. 2026-11-26T09:51:32Z
    size: int  # bytes of the stored archive
    sha256: str  # of the stored archive
    compression: str
    archive: str  # object name of the archive in the store
    tags: list[str] = field(default_factory=list)
    location: str = ""  # full address of the archive; filled in from the store when read
    tar_size: int = 0
    volume_driver: str | None = None
    volume_labels: dict[str, str] = field(default_factory=dict)
    stopped_containers: list[str] = field(default_factory=list)
    transfer: str = ""
    tar: str = ""  # which tar wrote the archive, e.g. "gnu tar 1.34", "busybox tar 1.35"
    tar_keeps: list[str] = field(default_factory=list)  # what that tar keeps beyond the basics
    hostname: str = ""
    tool_version: str = ""
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupRecord:
        known = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def parse_record(data: object) -> BackupRecord:
    """Return the record in a metadata document. Raise ValueError if it is not a valid one."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    record = BackupRecord.from_dict(data)
    for name in ("id", "source", "kind", "created", "sha256", "compression", "archive"):
        if not isinstance(getattr(record, name), str):
            raise ValueError(f"{name} is not a string")
    if not isinstance(record.size, int) or record.compression not in SUFFIXES:
        raise ValueError("bad size or compression")
    if not isinstance(record.tags, list) or not all(isinstance(tag, str) for tag in record.tags):
        raise ValueError("tags is not a list of strings")
    check_name(record.archive)
    return record


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds (`2026-11-26T09:51:32.123Z`): two backups made in the
    same second still sort in the order they were made."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_backup_id(source_slug: str, moment: datetime) -> str:
    """Return a readable, sortable, unique id: `<slug>-<YYYYmmddTHHMMSSZ>-<4 hex>`."""
    return f"{source_slug}-{moment.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def source_slug(source: str) -> str:
    """Return a name-safe slug of a volume name or host path (`/srv/app data` -> `srv_app_data`)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.strip("/")).strip("._-")
    return slug[:80] or "root"


def archive_name(backup_id: str, compression: str) -> str:
    return backup_id + SUFFIXES[compression]


def metadata_name(backup_id: str) -> str:
    return backup_id + METADATA_SUFFIX


def write_record(storage: Storage, record: BackupRecord) -> None:
    """Store the metadata file: the last write of a backup, which makes it visible."""
    stored = dataclasses.replace(record, location="")
    text = json.dumps(stored.to_dict(), indent=2, sort_keys=True) + "\n"
    storage.write_bytes(metadata_name(record.id), text.encode())


def list_records(storage: Storage, source: str | None = None) -> list[BackupRecord]:
    """Return the store's backups (of `source` only, if given), oldest first.

    Unreadable metadata files are logged and passed over, so one bad file does not hide the rest.
    """
    records = []
    for info in storage.list():
        if not info.name.endswith(METADATA_SUFFIX) or "/" in info.name:
            continue
        try:
            data = json.loads(storage.read_bytes(info.name))
            record = parse_record(data)
        except errors.NotFound:
            continue  # removed while we listed
        except (ValueError, TypeError) as exc:
            log.warning("unreadable backup metadata, passed over", object=info.name, error=str(exc))
            continue
        if source is not None and record.source != source:
            continue
        record.location = storage.location(record.archive)
        records.append(record)
    return sorted(records, key=lambda record: (record.created, record.id))


def find_record(storage: Storage, source: str, backup_id: str = "latest") -> BackupRecord:
    """Return the backup `backup_id` (or the newest one) of `source`. Raise `NotFound` if none."""
    records = list_records(storage, source)
    if backup_id == "latest":
        if not records:
            raise errors.NotFound(
                f"no backups of {source} in {storage.url}",
                "check the source name and --from (opskit volume list --from ...)",
            )
        # A restore's own safety copy is not what "latest" means: running the same restore
        # twice must not bring back the state the first one replaced.
        chosen = [record for record in records if SAFETY_TAG not in record.tags] or records
        return chosen[-1]
    for record in records:
        if record.id == backup_id:
            return record
    raise errors.NotFound(
        f"no backup {backup_id} of {source} in {storage.url}",
        "list them with: opskit volume list --from " + storage.url,
    )

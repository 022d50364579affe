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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opskit import errors, untrusted
from opskit.archive.pipeline import SUFFIXES
from opskit.log import get_logger
from opskit.repository import index as record_index
from opskit.storage.base import ObjectInfo, Storage, check_name

log = get_logger(__name__)

METADATA_SUFFIX = ".json"
AGE_SUFFIX = ".age"
# Every name ending an archive can have: .tar.zst, .tar.zst.age, ...
ARCHIVE_SUFFIXES = tuple(
    suffix + age for suffix in dict.fromkeys(SUFFIXES.values()) for age in ("", AGE_SUFFIX)
)
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
    snapshot: str | None = None  # the snapshot id this backup belongs to, if any
    verified_at: str | None = None  # UTC ISO 8601 of the last restore drill
    verified_ok: bool | None = None  # its outcome; None: never verified
    verified_reason: str = ""  # a short reason, e.g. "3 entries differ: ./a (mode) ..."
    # The pipeline's stages after tar, in the order they were applied: ["zstd", "age"]. None in
    # records from before stages were recorded: then the compression alone.
    stages: list[str] | None = None
    # {"format": "age", "recipients": ["sha256:…", …]}: fingerprints, never keys. None: plain.
    encryption: dict[str, Any] | None = None
    format: int = FORMAT_VERSION

    def stage_names(self) -> list[str]:
        return list(self.stages) if self.stages is not None else stage_names(self.compression)

    @property
    def encrypted(self) -> bool:
        return "age" in self.stage_names()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupRecord:
        known = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class MetadataProblem:
    """A metadata file in the store that is not a valid backup record, and why.

    `name` is the object's name as stored: it may hold anything, so show it with `str(problem)`
    or `untrusted.printable`. `reason` is printable.
    """

    name: str
    reason: str
    claimed_source: str | None = None  # a valid record in a misnamed file: the source it names

    def __str__(self) -> str:
        return f"{untrusted.printable(self.name)}: {self.reason}"


class Listing(list[BackupRecord]):
    """The valid backups of a store, oldest first (a list), and `problems`: the metadata files
    that could not be read, each passed over so one bad file does not hide the rest."""

    def __init__(
        self, records: Iterable[BackupRecord] = (), problems: Iterable[MetadataProblem] = ()
    ) -> None:
        super().__init__(records)
        self.problems = list(problems)
        self.files_read = 0  # metadata files read because the record index lacked them
        self.index_entries: list[record_index.Entry] = []
        self.index_was_current = False


MAX_METADATA_BYTES = untrusted.MIB  # a record is about 1 KB; a bigger file is damaged
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z")
KINDS = ("volume", "path")
# Required fields, then the optional ones with their checks; unknown keys are ignored, so a
# later version may add fields.
_REQUIRED = ("id", "source", "kind", "created", "size", "sha256", "compression", "archive")


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_text_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    )


def _is_optional_text(value: object) -> bool:
    return value is None or isinstance(value, str)


def _is_encryption(value: object) -> bool:
    return value is None or (
        isinstance(value, dict)
        and value.get("format") == "age"
        and _is_text_list(value.get("recipients"))
    )


def _is_format(value: object) -> bool:
    return _is_count(value) and value != 0


def _matches(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and pattern.fullmatch(value) is not None


def _one_of(choices: Iterable[str]) -> Callable[[object], bool]:
    allowed = frozenset(choices)
    return lambda value: isinstance(value, str) and value in allowed


_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "id": (_matches(SAFE_ID), "not a safe name (letters, digits, _ . -)"),
    "source": (_matches(re.compile(r".+", re.DOTALL)), "not a non-empty string"),
    "kind": (_one_of(KINDS), "not volume or path"),
    "created": (_matches(ISO_UTC), "not a UTC ISO 8601 time"),
    "size": (_is_count, "not a byte count"),
    "sha256": (_matches(SHA256_HEX), "not 64 lowercase hex digits"),
    "compression": (_one_of(SUFFIXES), f"not one of {', '.join(SUFFIXES)}"),
    "archive": (_is_text, "not a string"),
    "tags": (_is_text_list, "not a list of strings"),
    "tar_size": (_is_count, "not a byte count"),
    "volume_driver": (_is_optional_text, "not a string or null"),
    "volume_labels": (_is_text_map, "not a mapping of strings"),
    "stopped_containers": (_is_text_list, "not a list of strings"),
    "transfer": (_is_text, "not a string"),
    "tar": (_is_text, "not a string"),
    "tar_keeps": (_is_text_list, "not a list of strings"),
    "hostname": (_is_text, "not a string"),
    "tool_version": (_is_text, "not a string"),
    "snapshot": (_is_optional_text, "not a string or null"),
    "verified_at": (lambda value: value is None or _matches(ISO_UTC)(value), "not a UTC time"),
    "verified_ok": (lambda value: value is None or isinstance(value, bool), "not a bool or null"),
    "verified_reason": (_is_text, "not a string"),
    "stages": (lambda value: value is None or _is_text_list(value), "not a list of strings"),
    "encryption": (_is_encryption, "not null or {format: age, recipients: [...]}"),
    "format": (_is_format, "not a format number"),
}


def parse_record(data: object) -> BackupRecord:
    """Given a metadata document, return its record. Raise ValueError with a printable reason
    (missing or wrongly typed fields, an unsafe id or archive name) if it is not a valid one."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    wrong = [name for name, (check, _) in _CHECKS.items() if name in data and not check(data[name])]
    if wrong:
        raise ValueError("; ".join(f"{name} is {_CHECKS[name][1]}" for name in wrong))
    if data.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(f"written by a newer opskit (format {data['format']})")
    # The archive's name is derived from the id, as backups write it: metadata cannot point a
    # restore at another object, and no name from it reaches a path unchecked.
    encrypted = data.get("encryption") is not None
    stages = data.get("stages")
    if stages is not None and stages != stage_names(data["compression"], encrypted):
        raise ValueError(
            f"stages {untrusted.printable(str(stages))} do not match compression "
            f"{data['compression']} and encryption {'age' if encrypted else 'none'}"
        )
    if encrypted and stages is None:
        raise ValueError("encryption without stages")
    expected = archive_name(data["id"], data["compression"], encrypted)
    if data["archive"] != expected:
        shown = untrusted.printable(data["archive"])
        raise ValueError(f"archive is {shown!r}, not {expected!r}")
    check_name(expected)
    record = BackupRecord.from_dict(data)
    record.location = ""
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


def stage_names(compression: str, encrypted: bool = False) -> list[str]:
    """The stages after tar: the compression (none for "none"), then age if encrypted."""
    return ([] if compression == "none" else [compression]) + (["age"] if encrypted else [])


def archive_name(backup_id: str, compression: str, encrypted: bool = False) -> str:
    return backup_id + SUFFIXES[compression] + (AGE_SUFFIX if encrypted else "")


def metadata_name(backup_id: str) -> str:
    return backup_id + METADATA_SUFFIX


def write_record(storage: Storage, record: BackupRecord) -> None:
    """Store the metadata file: the last write of a backup, which makes it visible."""
    stored = dataclasses.replace(record, location="")
    text = json.dumps(stored.to_dict(), indent=2, sort_keys=True) + "\n"
    storage.write_bytes(metadata_name(record.id), text.encode())


def could_be_backup_of(name: str, source: str | None = None) -> bool:
    """Whether object `name` is named as the metadata file of a backup (of `source`, if given).

    Backups are named `<slug of source>-<time>-<suffix>.json`, so this tells, without reading a
    damaged file, that it may be one of this source's backups; other JSON files in a store (an
    inventory, a manifest) are no backups.
    """
    slug = re.escape(source_slug(source)) if source is not None else "[^/]+"
    pattern = slug + r"-[0-9]{8}T[0-9]{6}Z-[^/]*" + re.escape(METADATA_SUFFIX)
    return re.fullmatch(pattern, name, re.DOTALL) is not None


def remove_backup(storage: Storage, record: BackupRecord) -> None:
    """Remove a backup: its metadata first, then its archive, so that a listed backup never
    lacks its archive (an interruption between leaves an unlisted archive, an orphan that
    prune removes). An object that is already gone is fine. Raise `StorageError` otherwise."""
    for name in (metadata_name(record.id), record.archive):
        try:
            storage.remove(name)
        except errors.NotFound:
            log.debug("already removed", name=name)


def list_records(storage: Storage, source: str | None = None) -> Listing:
    """Return the store's valid backups (of `source` only, if given), oldest first, with the
    metadata files that are not valid records as `problems`.

    A problem is a file named like a backup's metadata that cannot be read, is larger than
    `MAX_METADATA_BYTES` or is not a valid record, or a valid record in a file not named
    `<id>.json` for the id it holds (it is ignored, so it cannot shadow a backup). With `source`,
    the problems are those named like its backups or claiming to be one.

    Records are taken from the store's record index where it has them (see `index`), so
    only the files it lacks are read; `listing.files_read` says how many were.
    """
    records: list[BackupRecord] = []
    problems: list[MetadataProblem] = []
    listed = [
        info
        for info in storage.list()
        if info.name.endswith(METADATA_SUFFIX) and "/" not in info.name
    ]
    indexed, indexed_count = record_index.read(
        storage, {record_index.key_of(info) for info in listed}
    )
    entries: list[record_index.Entry] = []
    files_read = 0
    for info in listed:
        document = indexed.get(record_index.key_of(info)) if info.version else None
        entry: BackupRecord | MetadataProblem | None = None
        if document is not None:
            entry = _entry_from(info, document)
        if entry is None:
            files_read += 1
            entry, document = _read_entry(storage, info)
        if isinstance(entry, BackupRecord):
            if document is not None:
                entries.append(record_index.Entry(info, document))
            if source is None or entry.source == source:
                entry.location = storage.location(entry.archive)
                records.append(entry)
        elif entry is not None and _concerns(entry, source):
            log.info("backup metadata passed over", problem=str(entry))
            problems.append(entry)
    records.sort(key=lambda record: (record.created, record.id))
    listing = Listing(records, problems)
    listing.files_read = files_read
    listing.index_entries = entries
    listing.index_was_current = files_read == 0 and len(entries) == indexed_count
    return listing


def refresh_index(storage: Storage) -> None:
    """Bring the store's record index up to date after a record was written. Best effort: the
    index only saves reads, so failing to write it is logged, not raised."""
    try:
        listing = list_records(storage)
        if not listing.index_was_current:
            record_index.write(storage, listing.index_entries)
    except errors.OpskitError as exc:
        log.debug("record index not refreshed", reason=str(exc))


def _entry_from(info: ObjectInfo, document: dict[str, Any]) -> BackupRecord | None:
    """The record in an index entry for `info`, or None if it is not a valid one for that file
    (then the file itself is read)."""
    try:
        record = parse_record(document)
    except (ValueError, RecursionError):
        return None
    return record if info.name == metadata_name(record.id) else None


def _read_entry(
    storage: Storage, info: ObjectInfo
) -> tuple[BackupRecord | MetadataProblem | None, dict[str, Any] | None]:
    """Return the record in metadata object `info`, or the problem with it (None if it was
    removed meanwhile), and the document it was parsed from."""
    document = None
    try:
        document = json.loads(_read_metadata(storage, info))
        record = parse_record(document)
    except errors.NotFound:
        return None, None
    except errors.StorageError as exc:
        return MetadataProblem(info.name, f"cannot be read ({exc})"), None
    except RecursionError:
        return MetadataProblem(info.name, "nested too deeply"), None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return MetadataProblem(info.name, untrusted.printable(str(exc))), None
    if info.name != metadata_name(record.id):
        reason = f"holds backup {record.id}, whose file is {metadata_name(record.id)}"
        return MetadataProblem(info.name, reason, claimed_source=record.source), None
    return record, document


def _concerns(problem: MetadataProblem, source: str | None) -> bool:
    """Whether `problem` is worth reporting for `source` (any source if None): the file is
    named like its backups' metadata, or holds a record of it."""
    if problem.claimed_source is not None and source in (None, problem.claimed_source):
        return True
    return could_be_backup_of(problem.name, source)


def _read_metadata(storage: Storage, info: ObjectInfo) -> bytes:
    """Return a metadata object's bytes, reading at most `MAX_METADATA_BYTES` (plus one)."""
    if info.size > MAX_METADATA_BYTES:
        raise ValueError(f"larger than {untrusted.describe_size(MAX_METADATA_BYTES)}")
    chunks: list[bytes] = []
    total = 0
    with storage.open(info.name) as stream:
        while total <= MAX_METADATA_BYTES:
            chunk = stream.read(MAX_METADATA_BYTES + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > MAX_METADATA_BYTES:
        raise ValueError(f"larger than {untrusted.describe_size(MAX_METADATA_BYTES)}")
    return b"".join(chunks)


def find_record(storage: Storage, source: str, backup_id: str = "latest") -> BackupRecord:
    """Return the backup `backup_id` (or the newest one) of `source`.

    Raise `NotFound` if there is none. Raise `MetadataCorrupt` if the backup's metadata file is
    damaged, or, for "latest", if any metadata file named like a backup of `source` is: the
    newest backup may be the damaged one, and restoring an older one instead must not happen
    silently.
    """
    listing = list_records(storage, source)
    shown_source = untrusted.printable(source)
    shown_url = untrusted.printable(storage.url)
    if backup_id == "latest":
        damaged = [
            problem for problem in listing.problems if could_be_backup_of(problem.name, source)
        ]
        if damaged:
            problem = damaged[-1]
            others = f" ({len(damaged) - 1} more are)" if len(damaged) > 1 else ""
            raise errors.MetadataCorrupt(
                f"cannot tell the latest backup of {shown_source} in {shown_url}: metadata file "
                f"{untrusted.printable(problem.name)} is damaged ({problem.reason}){others}",
                f"pass --backup ID to restore another (opskit volume list --from {shown_url})",
            )
        if not listing:
            raise errors.NotFound(
                f"no backups of {shown_source} in {shown_url}",
                "check the source name and --from (opskit volume list --from ...)",
            )
        # A restore's own safety copy is not what "latest" means: running the same restore
        # twice must not bring back the state the first one replaced.
        chosen = [record for record in listing if SAFETY_TAG not in record.tags] or listing
        return chosen[-1]
    for record in listing:
        if record.id == backup_id:
            return record
    for problem in listing.problems:
        if problem.name == metadata_name(backup_id):
            raise errors.MetadataCorrupt(
                f"the metadata of backup {untrusted.printable(backup_id)} in {shown_url} is "
                f"damaged: {problem.reason}",
                "pass --backup ID to restore another",
            )
    raise errors.NotFound(
        f"no backup {untrusted.printable(backup_id)} of {shown_source} in {shown_url}",
        "list them with: opskit volume list --from " + shown_url,
    )

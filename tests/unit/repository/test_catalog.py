"""Backup records: ids, names, the metadata file, listing and finding backups in a store."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opskit import errors
from opskit.repository import catalog
from opskit.storage.local import PARTIAL_PREFIX, LocalStorage

MOMENT = datetime(2026, 11, 26, 9, 51, 32, tzinfo=UTC)


def _record(source: str = "pgdata", created: datetime = MOMENT, **fields) -> catalog.BackupRecord:
    backup_id = fields.pop("id", None) or catalog.new_backup_id(
        catalog.source_slug(source), created
    )
    defaults = dict(
        id=backup_id,
        source=source,
        kind="path" if source.startswith("/") else "volume",
        created=catalog.iso_utc(created),
        size=123,
        sha256="ab" * 32,
        compression="zstd",
        archive=catalog.archive_name(backup_id, "zstd"),
    )
    defaults.update(fields)
    return catalog.BackupRecord(**defaults)


def _store(tmp_path: Path, *records: catalog.BackupRecord) -> LocalStorage:
    storage = LocalStorage(tmp_path / "store")
    for record in records:
        storage.write_bytes(record.archive, b"archive bytes")
        catalog.write_record(storage, record)
    return storage


def test_new_backup_id_is_readable_and_sortable():
    backup_id = catalog.new_backup_id("pgdata", MOMENT)

    assert re.fullmatch(r"pgdata-20261126T095132Z-[0-9a-f]{4}", backup_id), backup_id


def test_new_backup_ids_of_one_moment_differ():
    assert len({catalog.new_backup_id("pgdata", MOMENT) for _ in range(50)}) > 1


@pytest.mark.parametrize(
    ("source", "slug"),
    [
        ("pgdata", "pgdata"),
        ("/srv/app data", "srv_app_data"),
        ("/srv/app/uploads/", "srv_app_uploads"),
        ("my.volume-1_x", "my.volume-1_x"),
        ("/", "root"),
        ("/données/été", "donn_es_t"),
    ],
)
def test_source_slug_is_name_safe(source, slug):
    assert catalog.source_slug(source) == slug


def test_source_slug_is_bounded():
    assert len(catalog.source_slug("v" * 500)) <= 80


@pytest.mark.parametrize(
    ("compression", "name"),
    [("zstd", "x.tar.zst"), ("gzip", "x.tar.gz"), ("none", "x.tar")],
)
def test_archive_name_has_the_standard_suffix(compression, name):
    assert catalog.archive_name("x", compression) == name


def test_iso_utc_is_iso_8601_with_milliseconds_and_z():
    assert catalog.iso_utc(MOMENT) == "2026-11-26T09:51:32.000Z"
    assert catalog.iso_utc(MOMENT.replace(microsecond=123999)) == "2026-11-26T09:51:32.123Z"


def test_write_record_stores_json_beside_the_archive(tmp_path):
    record = _record(tags=["nightly"], volume_labels={"app": "db"}, stopped_containers=["db"])
    storage = _store(tmp_path, record)

    stored = json.loads((tmp_path / "store" / f"{record.id}.json").read_text())

    assert stored["id"] == record.id
    assert stored["archive"] == record.archive
    assert stored["tags"] == ["nightly"]
    assert stored["volume_labels"] == {"app": "db"}
    assert stored["stopped_containers"] == ["db"]
    assert stored["location"] == ""  # a store may move: the location is filled in when read
    assert [found.id for found in catalog.list_records(storage)] == [record.id]


def test_list_records_fills_in_the_location_of_the_archive(tmp_path):
    record = _record()
    storage = _store(tmp_path, record)

    [listed] = catalog.list_records(storage)

    assert listed.location == str(tmp_path / "store" / record.archive)
    assert Path(listed.location).is_file()


def test_list_records_is_oldest_first_and_filters_by_source(tmp_path):
    newest = _record("pgdata", datetime(2026, 11, 27, tzinfo=UTC))
    oldest = _record("pgdata", datetime(2026, 11, 25, tzinfo=UTC))
    other = _record("redis", datetime(2026, 11, 26, tzinfo=UTC))
    storage = _store(tmp_path, newest, other, oldest)

    assert [record.id for record in catalog.list_records(storage)] == [
        oldest.id,
        other.id,
        newest.id,
    ]
    assert [record.id for record in catalog.list_records(storage, "pgdata")] == [
        oldest.id,
        newest.id,
    ]
    assert catalog.list_records(storage, "nothing") == []


def test_list_records_passes_over_partial_unreadable_and_foreign_files(tmp_path):
    record = _record()
    storage = _store(tmp_path, record)
    root = tmp_path / "store"
    (root / f"{PARTIAL_PREFIX}1234-other.json").write_text(json.dumps(_record("x").to_dict()))
    (root / "broken.json").write_text("{not json")
    (root / "incomplete.json").write_text('{"id": "x"}')
    (root / "notes.txt").write_text("hello")
    (root / "sub").mkdir()
    (root / "sub" / "nested.json").write_text(json.dumps(_record("y").to_dict()))

    assert [found.id for found in catalog.list_records(storage)] == [record.id]


@pytest.mark.parametrize("content", ["[1, 2]", "null"])
def test_list_records_passes_over_a_json_file_that_is_not_an_object(tmp_path, content):
    """A store directory may hold other JSON files (a manifest, a list): they are no backups."""
    record = _record()
    storage = _store(tmp_path, record)
    (tmp_path / "store" / "manifest.json").write_text(content)

    assert [found.id for found in catalog.list_records(storage)] == [record.id]


def test_list_records_of_a_missing_store_is_empty(tmp_path):
    assert catalog.list_records(LocalStorage(tmp_path / "missing")) == []


def test_record_from_dict_ignores_unknown_keys():
    data = _record().to_dict() | {"added_in_a_later_version": True}

    assert catalog.BackupRecord.from_dict(data).id == data["id"]


def test_find_record_latest_and_by_id(tmp_path):
    first = _record("pgdata", datetime(2026, 11, 25, tzinfo=UTC))
    second = _record("pgdata", datetime(2026, 11, 26, tzinfo=UTC))
    storage = _store(tmp_path, second, first)

    assert catalog.find_record(storage, "pgdata").id == second.id
    assert catalog.find_record(storage, "pgdata", "latest").id == second.id
    assert catalog.find_record(storage, "pgdata", first.id).id == first.id


def test_find_record_latest_is_the_newest_within_one_second(tmp_path):
    """Two backups made in the same second: `latest` must be the one made second.

    Their ids differ only in the random suffix of `new_backup_id`, which must not decide the
    order: here the later backup happened to draw the smaller suffix.
    """
    storage = _store(tmp_path)
    # written in this order: ffff first, 0000 250 ms later
    for offset, suffix in ((0, "ffff"), (250_000, "0000")):
        created = MOMENT.replace(microsecond=offset)
        record = _record("pgdata", created, id=f"pgdata-20261126T095132Z-{suffix}")
        storage.write_bytes(record.archive, suffix.encode())
        catalog.write_record(storage, record)

    assert catalog.find_record(storage, "pgdata").id == "pgdata-20261126T095132Z-0000"


def test_find_record_raises_not_found_without_backups(tmp_path):
    storage = _store(tmp_path, _record("redis"))

    with pytest.raises(errors.NotFound, match="pgdata"):
        catalog.find_record(storage, "pgdata")


def test_find_record_raises_not_found_for_an_unknown_id(tmp_path):
    storage = _store(tmp_path, _record("pgdata"))

    with pytest.raises(errors.NotFound, match="pgdata-nope"):
        catalog.find_record(storage, "pgdata", "pgdata-nope")


def test_find_record_does_not_return_another_sources_backup_by_id(tmp_path):
    other = _record("redis")
    storage = _store(tmp_path, other)

    with pytest.raises(errors.NotFound):
        catalog.find_record(storage, "pgdata", other.id)


# -- damaged, hostile and misnamed metadata ---------------------------------------------------


def _write_raw(storage: LocalStorage, name: str, content: str | bytes) -> None:
    data = content.encode() if isinstance(content, str) else content
    storage.root.mkdir(parents=True, exist_ok=True)
    (storage.root / name).write_bytes(data)


def test_parse_record_of_an_empty_object_names_the_missing_fields():
    with pytest.raises(ValueError) as raised:
        catalog.parse_record({})

    message = str(raised.value)
    assert message.startswith("missing id, source, kind, created"), message
    assert "__init__" not in message and "positional" not in message


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("id", "../../etc/passwd", "id is not a safe name"),
        ("id", "pgdata\x1b[2J", "id is not a safe name"),
        ("id", ".hidden", "id is not a safe name"),
        ("id", 7, "id is not a safe name"),
        ("source", "", "source is not a non-empty string"),
        ("kind", "device", "kind is not volume or path"),
        ("kind", ["volume"], "kind is not volume or path"),
        ("created", "yesterday", "created is not a UTC ISO 8601 time"),
        ("size", -1, "size is not a byte count"),
        ("size", True, "size is not a byte count"),
        ("size", "123", "size is not a byte count"),
        ("sha256", "AB" * 32, "sha256 is not 64 lowercase hex digits"),
        ("sha256", "ab" * 31, "sha256 is not 64 lowercase hex digits"),
        ("compression", "xz", "compression is not one of"),
        ("compression", ["zstd"], "compression is not one of"),
        ("tags", "nightly", "tags is not a list of strings"),
        ("tar_size", 1.5, "tar_size is not a byte count"),
        ("volume_labels", {"a": 1}, "volume_labels is not a mapping of strings"),
        ("format", 0, "format is not a format number"),
        ("format", 2, "written by a newer opskit"),
    ],
)
def test_parse_record_refuses_a_bad_field_with_its_name(field, value, reason):
    data = _record().to_dict() | {field: value}

    with pytest.raises(ValueError, match=re.escape(reason)):
        catalog.parse_record(data)


@pytest.mark.parametrize(
    "archive", ["../../../dev/urandom", "other-backup.tar.zst", "x\x1b[31m.tar.zst", "/etc/shadow"]
)
def test_parse_record_refuses_an_archive_name_not_derived_from_the_id(archive):
    data = _record().to_dict() | {"archive": archive}

    with pytest.raises(ValueError, match="archive is") as raised:
        catalog.parse_record(data)

    assert "\x1b" not in str(raised.value)


def test_every_record_field_has_a_check():
    """A field added to BackupRecord must be validated when read, not taken on trust."""
    fields = {item.name for item in dataclasses.fields(catalog.BackupRecord)} - {"location"}

    assert fields == set(catalog._CHECKS)


def test_parse_record_ignores_the_stored_location():
    data = _record().to_dict() | {"location": "/etc/shadow"}

    assert catalog.parse_record(data).location == ""


def test_list_records_reports_damaged_files_as_problems(tmp_path):
    good = _record("pgdata", datetime(2026, 11, 25, tzinfo=UTC))
    storage = _store(tmp_path, good)
    _write_raw(storage, "pgdata-20261126T000000Z-abcd.json", "{}")
    _write_raw(storage, "pgdata-20261127T000000Z-abcd.json", b"\xff\xfe garbage")

    listing = catalog.list_records(storage)

    assert [record.id for record in listing] == [good.id]
    assert [problem.name for problem in listing.problems] == [
        "pgdata-20261126T000000Z-abcd.json",
        "pgdata-20261127T000000Z-abcd.json",
    ]
    assert listing.problems[0].reason.startswith("missing id")


def test_list_records_problems_of_a_source_are_those_named_like_its_backups(tmp_path):
    storage = _store(tmp_path, _record("pgdata"))
    _write_raw(storage, "pgdata-20261126T000000Z-abcd.json", "{}")
    _write_raw(storage, "redis-20261126T000000Z-abcd.json", "{}")
    _write_raw(storage, "manifest.json", "[1, 2]")

    assert [problem.name for problem in catalog.list_records(storage, "pgdata").problems] == [
        "pgdata-20261126T000000Z-abcd.json"
    ]
    # other JSON files in a store are no backups, not damaged ones
    assert len(catalog.list_records(storage).problems) == 2


def test_find_record_latest_refuses_when_a_file_of_the_source_is_damaged(tmp_path):
    older = _record("pgdata", datetime(2026, 11, 25, tzinfo=UTC))
    newest = _record("pgdata", datetime(2026, 11, 26, tzinfo=UTC))
    storage = _store(tmp_path, older, newest)
    _write_raw(storage, catalog.metadata_name(newest.id), "{}")  # the newest one is damaged

    with pytest.raises(errors.MetadataCorrupt) as raised:
        catalog.find_record(storage, "pgdata")

    message = str(raised.value)
    assert catalog.metadata_name(newest.id) in message
    assert "pass --backup ID to restore another" in message
    assert "__init__" not in message
    assert raised.value.exit_code == 1
    # naming a backup still works
    assert catalog.find_record(storage, "pgdata", older.id).id == older.id


def test_find_record_of_a_damaged_backup_by_id_says_it_is_damaged(tmp_path):
    record = _record("pgdata")
    storage = _store(tmp_path, record)
    _write_raw(storage, catalog.metadata_name(record.id), '{"id": "' + record.id + '"')

    with pytest.raises(errors.MetadataCorrupt, match="damaged"):
        catalog.find_record(storage, "pgdata", record.id)


def test_find_record_latest_ignores_damaged_files_of_other_sources(tmp_path):
    record = _record("pgdata")
    storage = _store(tmp_path, record)
    _write_raw(storage, "redis-20261126T000000Z-abcd.json", "{}")
    _write_raw(storage, "manifest.json", "[1, 2]")

    assert catalog.find_record(storage, "pgdata").id == record.id


def test_a_misnamed_metadata_file_does_not_shadow_a_backup(tmp_path):
    real = _record("pgdata", datetime(2026, 11, 25, tzinfo=UTC))
    storage = _store(tmp_path, real)
    fake = _record("pgdata", datetime(2026, 11, 26, tzinfo=UTC), id=real.id, size=1)
    _write_raw(storage, "zzz-planted.json", json.dumps(fake.to_dict()))

    listing = catalog.list_records(storage, "pgdata")

    assert [(record.id, record.size) for record in listing] == [(real.id, real.size)]
    assert [problem.name for problem in listing.problems] == ["zzz-planted.json"]
    assert f"holds backup {real.id}" in listing.problems[0].reason
    assert catalog.find_record(storage, "pgdata").size == real.size
    assert catalog.find_record(storage, "pgdata", real.id).size == real.size


def test_a_metadata_file_larger_than_the_bound_is_damaged_and_not_read_whole(tmp_path):
    storage = _store(tmp_path, _record("pgdata"))
    big = "pgdata-20261127T000000Z-abcd.json"
    _write_raw(storage, big, '{"id": "' + "x" * catalog.MAX_METADATA_BYTES + '"}')

    [problem] = catalog.list_records(storage).problems

    assert problem.name == big
    assert "larger than 1 MiB" in problem.reason
    with pytest.raises(errors.MetadataCorrupt, match="larger than 1 MiB"):
        catalog.find_record(storage, "pgdata")


def test_deeply_nested_metadata_is_damaged_not_a_crash(tmp_path):
    storage = _store(tmp_path)
    _write_raw(storage, "pgdata-20261127T000000Z-abcd.json", "[" * 200_000)

    [problem] = catalog.list_records(storage).problems

    assert problem.name == "pgdata-20261127T000000Z-abcd.json"


def test_names_of_damaged_files_are_escaped_in_messages(tmp_path):
    storage = _store(tmp_path)
    name = "pgdata-20261127T000000Z-\x1b[2J\x1b[31m.json"
    _write_raw(storage, name, "{}")

    with pytest.raises(errors.MetadataCorrupt) as raised:
        catalog.find_record(storage, "pgdata")

    assert "\x1b" not in str(raised.value)
    assert "\\x1b[2J" in str(raised.value)
    assert "\x1b" not in str(catalog.list_records(storage).problems[0])


def test_a_metadata_file_that_is_a_symlink_out_of_the_store_is_not_read(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(_record("pgdata").to_dict()))
    storage = _store(tmp_path)
    storage.root.mkdir()
    (storage.root / "pgdata-20261127T000000Z-abcd.json").symlink_to(secret)

    listing = catalog.list_records(storage)

    assert list(listing) == []
    assert "not a regular file" in listing.problems[0].reason


def test_a_file_named_like_the_newest_backup_holding_another_record_blocks_latest(tmp_path):
    older = _record("pgdata", datetime(2026, 11, 25, tzinfo=UTC))
    newest = _record("pgdata", datetime(2026, 11, 26, tzinfo=UTC))
    storage = _store(tmp_path, older, newest)
    other = _record("redis")
    _write_raw(storage, catalog.metadata_name(newest.id), json.dumps(other.to_dict()))

    with pytest.raises(errors.MetadataCorrupt, match=f"holds backup {other.id}"):
        catalog.find_record(storage, "pgdata")
    assert [record.id for record in catalog.list_records(storage, "redis")] == []

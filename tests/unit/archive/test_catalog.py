"""Backup records: ids, names, the metadata file, listing and finding backups in a store."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opskit import errors
from opskit.archive import catalog
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

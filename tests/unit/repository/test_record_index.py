"""The record index: listing reads one index object instead of one metadata file per backup,
and a stale, damaged or forged index never changes what is listed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opskit.repository import catalog
from opskit.repository import index as record_index
from opskit.storage.local import LocalStorage
from tests.unit.repository.test_catalog import _record

MOMENT = datetime(2026, 11, 26, 9, 51, 32, tzinfo=UTC)


class CountingStorage(LocalStorage):
    """A local store that counts the objects opened for reading, by name."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.opened: list[str] = []

    def open(self, name: str):
        self.opened.append(name)
        return super().open(name)


def _backed_up(storage: LocalStorage, count: int, source: str = "pgdata") -> list:
    records = []
    for number in range(count):
        record = _record(source, MOMENT + timedelta(minutes=number))
        storage.write_bytes(record.archive, b"archive bytes")
        catalog.write_record(storage, record)
        catalog.refresh_index(storage)
        records.append(record)
    return records


def test_a_listing_after_refresh_reads_the_index_and_no_metadata_file(tmp_path):
    storage = CountingStorage(tmp_path / "store")
    written = _backed_up(storage, 5)
    storage.opened.clear()
    listing = catalog.list_records(storage)
    assert [record.id for record in listing] == [record.id for record in written]
    assert listing.files_read == 0
    assert storage.opened == [record_index.INDEX_NAME]
    assert listing[0].location == storage.location(written[0].archive)


def test_without_an_index_every_metadata_file_is_read(tmp_path):
    storage = CountingStorage(tmp_path / "store")
    written = _backed_up(storage, 3)
    storage.remove(record_index.INDEX_NAME)
    listing = catalog.list_records(storage)
    assert listing.files_read == 3
    assert [record.id for record in listing] == [record.id for record in written]


def test_a_record_rewritten_after_the_index_is_read_from_its_file(tmp_path):
    storage = CountingStorage(tmp_path / "store")
    first, second = _backed_up(storage, 2)
    first.verified_ok = True
    first.verified_reason = "ok"
    catalog.write_record(storage, first)  # as verify does; the index is now stale for it
    storage.opened.clear()
    listing = catalog.list_records(storage)
    assert listing.files_read == 1
    assert storage.opened == [record_index.INDEX_NAME, catalog.metadata_name(first.id)]
    assert [record.verified_ok for record in listing] == [True, None]
    catalog.refresh_index(storage)
    assert catalog.list_records(storage).files_read == 0


def test_removed_backups_are_not_listed_from_a_stale_index(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    first, second = _backed_up(storage, 2)
    catalog.remove_backup(storage, first)
    assert [record.id for record in catalog.list_records(storage)] == [second.id]


def test_a_backup_written_without_refresh_is_listed_by_reading_its_file(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    _backed_up(storage, 2)
    late = _record("pgdata", MOMENT + timedelta(hours=1))
    storage.write_bytes(late.archive, b"archive bytes")
    catalog.write_record(storage, late)  # a concurrent writer's record the index lost
    listing = catalog.list_records(storage)
    assert listing.files_read == 1
    assert listing[-1].id == late.id


def test_a_damaged_index_is_passed_over(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    written = _backed_up(storage, 2)
    for damage in (b"{not json", b"[]", b'{"format": 99, "entries": []}', b"\xff" * 10):
        storage.write_bytes(record_index.INDEX_NAME, damage)
        listing = catalog.list_records(storage)
        assert [record.id for record in listing] == [record.id for record in written]
        assert listing.files_read == 2


def test_a_forged_index_entry_that_is_no_valid_record_is_ignored(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    (only,) = _backed_up(storage, 1)
    data = json.loads(storage.read_bytes(record_index.INDEX_NAME))
    data["entries"][0]["record"]["archive"] = "../../etc/passwd"
    storage.write_bytes(record_index.INDEX_NAME, json.dumps(data).encode())
    listing = catalog.list_records(storage)
    assert listing.files_read == 1
    assert listing[0].archive == only.archive


def test_an_index_entry_cannot_add_a_backup_the_store_does_not_list(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    (only,) = _backed_up(storage, 1)
    ghost = _record("pgdata", MOMENT + timedelta(days=1))
    data = json.loads(storage.read_bytes(record_index.INDEX_NAME))
    data["entries"].append(
        {
            "name": catalog.metadata_name(ghost.id),
            "size": 10,
            "version": "1-1",
            "record": ghost.to_dict(),
        }  # fmt: skip
    )
    storage.write_bytes(record_index.INDEX_NAME, json.dumps(data).encode())
    assert [record.id for record in catalog.list_records(storage)] == [only.id]


def test_an_entry_for_one_file_cannot_stand_for_another(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    first, second = _backed_up(storage, 2)
    data = json.loads(storage.read_bytes(record_index.INDEX_NAME))
    entries = data["entries"]
    entries[0]["record"], entries[1]["record"] = entries[1]["record"], entries[0]["record"]
    storage.write_bytes(record_index.INDEX_NAME, json.dumps(data).encode())
    listing = catalog.list_records(storage)
    assert [record.id for record in listing] == [first.id, second.id]
    assert listing.files_read == 2


def test_refresh_does_not_rewrite_a_current_index(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    _backed_up(storage, 2)
    before = storage.stat(record_index.INDEX_NAME).version
    catalog.refresh_index(storage)
    assert storage.stat(record_index.INDEX_NAME).version == before


def test_refresh_where_the_index_cannot_be_written_does_not_raise(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    _backed_up(storage, 1)
    storage.remove(record_index.INDEX_NAME)
    (tmp_path / "store" / "index").rmdir()
    (tmp_path / "store" / "index").write_text("a file where the index's directory would be")
    late = _record("pgdata", MOMENT + timedelta(hours=1))
    catalog.write_record(storage, late)
    catalog.refresh_index(storage)  # logged, not raised: the index only saves reads
    assert [record.id for record in catalog.list_records(storage)][-1] == late.id


def test_the_index_is_not_listed_as_a_problem(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    _backed_up(storage, 1)
    assert catalog.list_records(storage).problems == []

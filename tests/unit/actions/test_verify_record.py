"""Recording a drill's outcome never brings back a backup that prune or delete removed."""

from __future__ import annotations

from pathlib import Path

from opskit import events
from opskit.actions import verify
from opskit.repository import catalog
from opskit.storage.local import LocalStorage


def _record(store: LocalStorage, with_archive: bool) -> catalog.BackupRecord:
    record = catalog.BackupRecord(
        id="app-20261126T120000Z-ab01",
        source="app",
        kind="volume",
        created="2026-11-26T12:00:00Z",
        size=13,
        sha256="0" * 64,
        compression="zstd",
        archive="app-20261126T120000Z-ab01.tar.zst",
    )
    if with_archive:
        store.write_bytes(record.archive, b"archive bytes")
    catalog.write_record(store, record)
    return record


def _passed() -> verify.BackupVerification:
    return verify.BackupVerification(
        backup_id="app-20261126T120000Z-ab01",
        source="app",
        ok=True,
        reason="ok",
        verified_at="2026-11-26T12:01:00Z",
    )


def test_the_outcome_is_written_into_the_metadata(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    record = _record(store, with_archive=True)

    assert verify._record(store, record, _passed(), events.discard) is True
    assert catalog.find_record(store, "app", record.id).verified_ok is True


def test_an_archive_removed_meanwhile_leaves_no_listed_backup(tmp_path: Path) -> None:
    # Prune removed the metadata and the archive between the drill's check and its write.
    store = LocalStorage(tmp_path)
    record = _record(store, with_archive=False)
    seen: list[events.Event] = []

    assert verify._record(store, record, _passed(), seen.append) is False
    assert list(catalog.list_records(store)) == []
    assert [type(event) for event in seen] == [events.VerificationNotRecorded]

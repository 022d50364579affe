"""`run_prune` and `run_delete` on a local store of hand-written records (no engine needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opskit import errors
from opskit.actions import context as context_module
from opskit.actions.context import RunContext
from opskit.actions.delete import DeleteRequest, run_delete
from opskit.actions.prune import PruneRequest, run_prune
from opskit.config.schema import Config
from opskit.repository import catalog, snapshots
from opskit.repository.retention import Policy
from opskit.storage.local import LocalStorage

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def write_backup(
    store: Path,
    source: str,
    days_ago: int,
    tags: tuple[str, ...] = (),
    snapshot: str | None = None,
) -> str:
    """Write a record and a small archive `days_ago` days before NOW; return its id."""
    moment = NOW - timedelta(days=days_ago)
    backup_id = (
        f"{catalog.source_slug(source)}-{moment.strftime('%Y%m%dT%H%M%SZ')}-ab{days_ago:02d}"
    )
    storage = LocalStorage(store)
    storage.write_bytes(catalog.archive_name(backup_id, "zstd"), b"archive bytes")
    catalog.write_record(
        storage,
        catalog.BackupRecord(
            id=backup_id,
            source=source,
            kind="volume",
            created=catalog.iso_utc(moment),
            size=13,
            sha256="0" * 64,
            compression="zstd",
            archive=catalog.archive_name(backup_id, "zstd"),
            tags=list(tags),
            snapshot=snapshot,
        ),
    )
    return backup_id


def names(store: Path) -> set[str]:
    return {path.name for path in store.iterdir()}


class ArchiveRemovalFails(LocalStorage):
    """A store whose archives cannot be removed (a permission problem, a dropped link)."""

    def remove(self, name: str) -> None:
        if name.endswith(".tar.zst"):
            raise errors.StorageError(f"removing {name}: permission denied")
        super().remove(name)


def test_run_prune_interrupted_after_the_metadata_leaves_no_listed_backup_without_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [write_backup(tmp_path, "app", days_ago) for days_ago in (5, 4, 3)]
    monkeypatch.setattr(
        context_module,
        "open_storage",
        lambda location, config, host=None: ArchiveRemovalFails(tmp_path),
    )
    request = PruneRequest(str(tmp_path), Policy(last=1))

    with pytest.raises(errors.StorageError, match="removed 0 of 2 backups"):
        run_prune(request, RunContext(Config()), now=NOW)

    listed = catalog.list_records(LocalStorage(tmp_path))
    assert [record.id for record in listed] == ids[1:]
    assert all((tmp_path / record.archive).exists() for record in listed)
    # The archive left behind is an orphan: the next prune (two days on) removes it.
    monkeypatch.undo()
    later = run_prune(request, RunContext(Config()), now=NOW + timedelta(days=2))
    assert [orphan.name for orphan in later.orphans] == [f"{ids[0]}.tar.zst"]
    assert names(tmp_path) == {f"{ids[2]}.json", f"{ids[2]}.tar.zst"}


def test_run_prune_dry_run_changes_nothing(tmp_path: Path) -> None:
    for days_ago in (3, 2, 1):
        write_backup(tmp_path, "app", days_ago)
    before = names(tmp_path)

    result = run_prune(
        PruneRequest(str(tmp_path), Policy(last=1), dry_run=True), RunContext(Config()), NOW
    )

    assert [backup.action for backup in result.backups] == ["remove", "remove", "keep"]
    assert not any(backup.removed for backup in result.backups)
    assert names(tmp_path) == before


def test_run_prune_only_the_named_volume(tmp_path: Path) -> None:
    app = [write_backup(tmp_path, "app", days_ago) for days_ago in (2, 1)]
    db = [write_backup(tmp_path, "db", days_ago) for days_ago in (2, 1)]

    result = run_prune(
        PruneRequest(str(tmp_path), Policy(last=1), volume="app"), RunContext(Config()), NOW
    )

    assert [backup.id for backup in result.backups] == app
    assert f"{app[0]}.json" not in names(tmp_path)
    assert {f"{db[0]}.json", f"{db[1]}.json"} <= names(tmp_path)


def test_run_prune_refuses_an_empty_policy_before_touching_the_store(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="no retention rule"):
        run_prune(PruneRequest(str(tmp_path / "missing"), Policy()), RunContext(Config()), NOW)


def test_run_prune_missing_directory_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="does not exist"):
        run_prune(
            PruneRequest(str(tmp_path / "missing"), Policy(last=1)), RunContext(Config()), NOW
        )


def test_run_prune_keeps_orphan_candidates_while_metadata_is_damaged(tmp_path: Path) -> None:
    kept = write_backup(tmp_path, "app", 1)
    (tmp_path / "app-20261101T000000Z-dead.tar.zst").write_bytes(b"orphan?")
    (tmp_path / "app-20261102T000000Z-bad0.json").write_text("{")

    result = run_prune(PruneRequest(str(tmp_path), Policy(last=1)), RunContext(Config()), NOW)

    assert result.orphans == []
    assert [held.source for held in result.held] == ["app"]
    assert (tmp_path / "app-20261101T000000Z-dead.tar.zst").exists()
    assert f"{kept}.json" in names(tmp_path)


def test_run_delete_asks_and_does_nothing_when_not_confirmed(tmp_path: Path) -> None:
    older = write_backup(tmp_path, "app", 2)
    write_backup(tmp_path, "app", 1)
    before = names(tmp_path)
    asked = []

    result = run_delete(
        DeleteRequest(str(tmp_path), older),
        RunContext(Config()),
        confirm=lambda c: asked.append(c) or False,
    )

    assert not result.deleted and [candidate.id for candidate in asked] == [older]
    assert names(tmp_path) == before


def test_run_delete_refuses_an_unsafe_id(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="not a backup id"):
        run_delete(DeleteRequest(str(tmp_path), "../etc/passwd"), RunContext(Config()))


def write_snapshot_record(store: Path, snapshot_id: str, members: list[str]) -> None:
    record = snapshots.SnapshotRecord(
        id=snapshot_id,
        project="shop",
        created=catalog.iso_utc(NOW),
        tags=["scheduled"],
        members=[snapshots.SnapshotMember(member, "app", "volume") for member in members],
    )
    snapshots.write_snapshot(LocalStorage(store), record)


def test_prune_removes_a_snapshot_record_once_its_last_member_is_gone(tmp_path: Path) -> None:
    old_set = "shop-20261120T000000Z-aaaa"
    new_set = "shop-20261125T000000Z-bbbb"
    old = write_backup(tmp_path, "app", 6, snapshot=old_set)
    new = write_backup(tmp_path, "app", 1, snapshot=new_set)
    write_backup(tmp_path, "db", 6, snapshot=old_set)  # another source still holds old_set
    write_snapshot_record(tmp_path, old_set, [old])
    write_snapshot_record(tmp_path, new_set, [new])

    first = run_prune(PruneRequest(str(tmp_path), Policy(last=1), volume="app"),
                      RunContext(Config()), NOW)  # fmt: skip
    assert [backup.id for backup in first.removed] == [old]
    assert first.snapshots_removed == []  # db's member of old_set is still listed
    assert (tmp_path / snapshots.record_name(old_set)).exists()

    second = run_prune(PruneRequest(str(tmp_path), Policy(last=1), volume="db"),
                       RunContext(Config()), NOW)  # fmt: skip
    assert second.removed == []  # db's only backup is its newest: kept
    listed = catalog.list_records(LocalStorage(tmp_path))
    db_backup = next(record.id for record in listed if record.source == "db")
    result = run_delete(DeleteRequest(str(tmp_path), db_backup, force=True), RunContext(Config()))
    assert result.snapshots_removed == [old_set]
    assert not (tmp_path / snapshots.record_name(old_set)).exists()
    assert (tmp_path / snapshots.record_name(new_set)).exists()

"""Snapshot records: what a valid one is, and what is refused (they come from a store)."""

from __future__ import annotations

import pytest

from opskit.repository import snapshots


def valid() -> dict:
    return snapshots.SnapshotRecord(
        id="shop-20261126T095132Z-1a2b",
        project="shop",
        created="2026-11-26T09:51:32.000Z",
        tags=["pre-upgrade"],
        members=[snapshots.SnapshotMember("shop_db-20261126T095132Z-aaaa", "shop_db", "volume")],
        compose_files=["/srv/shop/compose.yaml"],
    ).to_dict()


def test_parse_snapshot_round_trips():
    record = snapshots.parse_snapshot(valid())
    assert record.to_dict() == valid()


@pytest.mark.parametrize(
    "change",
    [
        {"id": "../evil"},
        {"members": []},
        {"members": [{"backup": "../x", "source": "a", "kind": "volume"}]},
        {"members": [{"backup": "a", "source": "a", "kind": "device"}]},
        {"tags": "pre-upgrade"},
        {"format": 99},
    ],
)
def test_parse_snapshot_refuses_damaged_records(change):
    with pytest.raises(ValueError):
        snapshots.parse_snapshot({**valid(), **change})


def test_record_name_is_under_snapshots():
    assert snapshots.record_name("x-1") == "snapshots/x-1.json"

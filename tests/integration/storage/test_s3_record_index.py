"""On a real S3 endpoint, listing a store of many backups costs a LIST and one GET (the record
index), not a GET per backup; and a stale index entry (ETag changed) is read again."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from opskit.config.targets import TargetConfig
from opskit.repository import catalog
from opskit.repository import index as record_index
from opskit.storage.s3 import S3Storage
from tests.unit.repository.test_catalog import _record

pytestmark = pytest.mark.integration

MOMENT = datetime(2026, 11, 26, 9, 51, 32, tzinfo=UTC)


class GetCounter:
    """Counts the GetObject requests the client really sends, by key (botocore event hooks)."""

    def __init__(self, client) -> None:
        self.keys: list[str] = []
        self.lock = threading.Lock()
        client.meta.events.register("provide-client-params.s3.GetObject", self.before_call)

    def before_call(self, params, **_) -> None:
        with self.lock:
            self.keys.append(params["Key"])


def test_listing_twenty_backups_reads_only_the_index(s3_bucket, s3_env) -> None:
    storage = S3Storage.from_target(TargetConfig(url=f"s3://{s3_bucket}/fleet/host-a"))
    try:
        written = []
        for number in range(20):
            record = _record("pgdata", MOMENT + timedelta(minutes=number))
            storage.write_bytes(record.archive, b"archive bytes")
            catalog.write_record(storage, record)
            written.append(record)
        catalog.refresh_index(storage)
        counter = GetCounter(storage.client)
        listing = catalog.list_records(storage, "pgdata")
        assert [record.id for record in listing] == [record.id for record in written]
        assert counter.keys == [f"fleet/host-a/{record_index.INDEX_NAME}"]

        written[3].verified_ok = False
        written[3].verified_reason = "1 entry differs"
        catalog.write_record(storage, written[3])  # a new ETag: its index entry is stale
        counter.keys.clear()
        listing = catalog.list_records(storage)
        assert listing[3].verified_ok is False
        assert counter.keys == [
            f"fleet/host-a/{record_index.INDEX_NAME}",
            f"fleet/host-a/{catalog.metadata_name(written[3].id)}",
        ]
    finally:
        storage.close()

"""Bad input, fuzzed: reading backup metadata from a store (`catalog.parse_record`,
`catalog.list_records` on a `LocalStorage`, the record index, snapshot records) fails only with
the documented errors, whatever the store holds, and in bounded memory.

Documented failures: `parse_record` and `snapshots.parse_snapshot` raise `ValueError`;
`list_records` raises nothing for a damaged file (it becomes one of the listing's `problems`);
`index.read` returns `{}` for an unusable index; `read_snapshot` raises `MetadataCorrupt`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import uuid
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from opskit import errors
from opskit.archive.pipeline import SUFFIXES
from opskit.repository import catalog, snapshots
from opskit.repository import index as record_index
from opskit.storage.base import check_name
from opskit.storage.local import LocalStorage
from tests.faults.fuzzing import MIB, fuzz, peak_memory

# --- valid records, random JSON, and mutations between them ------------------------------------

sources = st.sampled_from(["pgdata", "/srv/app data", "shop_db", "v" * 90, "données", "x\x1b"])
moments = st.builds(
    "{:04d}{:02d}{:02d}T{:02d}{:02d}{:02d}Z".format,
    st.integers(2000, 2099),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)
hex4 = st.text("0123456789abcdef", min_size=4, max_size=4)


@st.composite
def valid_documents(draw) -> dict:
    """A metadata document as `write_record` writes it, with its optional fields varied."""
    source = draw(sources)
    backup_id = f"{catalog.source_slug(source)}-{draw(moments)}-{draw(hex4)}"
    compression = draw(st.sampled_from(sorted(SUFFIXES)))
    encrypted = draw(st.booleans())
    stamp = draw(moments)
    record = catalog.BackupRecord(
        id=backup_id,
        source=source,
        kind=draw(st.sampled_from(catalog.KINDS)),
        created=f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:"
        f"{stamp[13:15]}.{draw(st.integers(0, 999)):03d}Z",
        size=draw(st.integers(0, 2**50)),
        sha256=draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
        compression=compression,
        archive=catalog.archive_name(backup_id, compression, encrypted),
        tags=draw(st.lists(st.sampled_from(["nightly", "pre-restore", "pre-upgrade"]), max_size=2)),
        stages=catalog.stage_names(compression, encrypted)
        if encrypted or draw(st.booleans())
        else None,
        encryption={"format": "age", "recipients": ["sha256:ab"]} if encrypted else None,
        verified_ok=draw(st.sampled_from([None, True, False])),
        snapshot=draw(st.sampled_from([None, "shop-20261126T095132Z-1a2b"])),
    )
    return json.loads(json.dumps(record.to_dict()))


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=10),
        st.sampled_from(["", "volume", "zstd", "age", "../x", "/abs", "a\nb", "x" * 300]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    [field.name for field in dataclasses.fields(catalog.BackupRecord)] + ["extra"]
)
document_mutations = st.sampled_from(["delete", "replace", "add", "retype", "copy"])


@st.composite
def mutated_documents(draw) -> dict:
    """A valid document with a few fields deleted, replaced by random JSON, wrapped in a list,
    or copied from another field."""
    document = draw(valid_documents())
    for _ in range(draw(st.integers(1, 3))):
        name = draw(field_names)
        kind = draw(document_mutations)
        if kind == "delete":
            document.pop(name, None)
        elif kind in ("replace", "add"):
            document[name] = draw(json_values)
        elif kind == "retype" and name in document:
            document[name] = [document[name]]
        elif kind == "copy":
            document[name] = document.get(draw(field_names))
    return document


VALID = catalog.BackupRecord(
    id="pgdata-20261126T095132Z-1a2b",
    source="pgdata",
    kind="volume",
    created="2026-11-26T09:51:32.000Z",
    size=123,
    sha256="ab" * 32,
    compression="zstd",
    archive="pgdata-20261126T095132Z-1a2b.tar.zst",
).to_dict()


def check_record(record: catalog.BackupRecord) -> None:
    """What a parsed record promises every caller: names safe to use as object names and
    paths, the archive derived from the id, typed fields."""
    assert catalog.SAFE_ID.fullmatch(record.id)
    assert record.archive == catalog.archive_name(
        record.id, record.compression, record.encryption is not None
    )
    assert check_name(record.archive) == record.archive
    assert check_name(catalog.metadata_name(record.id))
    assert record.kind in catalog.KINDS and record.compression in SUFFIXES
    assert catalog.SHA256_HEX.fullmatch(record.sha256)
    assert isinstance(record.size, int) and record.size >= 0
    assert record.stage_names() == catalog.stage_names(record.compression, record.encrypted)
    assert record.location == ""


@fuzz(200)
@given(document=st.one_of(valid_documents(), mutated_documents(), json_values))
@example(document={**VALID, "format": True})
@example(document={**VALID, "format": 10**5000})
@example(document={**VALID, "size": True})
@example(document={**VALID, "stages": ["zstd", 1]})
@example(document={**VALID, "encryption": {"format": "age", "recipients": "x"}})
@example(document={**VALID, "archive": "../" + VALID["archive"]})
def test_parse_record_fails_only_with_value_error(document):
    """Any JSON document (random, or a valid record mutated) gives a record keeping every
    promise of a record, or the `ValueError` `parse_record` documents."""
    try:
        record = catalog.parse_record(document)
    except ValueError as exc:
        assert str(exc)
        return
    check_record(record)
    again = catalog.parse_record(json.loads(json.dumps(record.to_dict())))
    assert again == record


@fuzz(30)
@given(document=valid_documents())
def test_parse_record_accepts_every_valid_document(document):
    """The mutations start from documents that are valid (else the fuzzing above would only
    ever see refusals)."""
    check_record(catalog.parse_record(document))


# --- a store of damaged metadata files ---------------------------------------------------------


def _flip(data: bytes, position: int, bit: int) -> bytes:
    if not data:
        return data
    position %= len(data)
    return data[:position] + bytes([data[position] ^ (1 << bit)]) + data[position + 1 :]


file_names = st.one_of(
    st.builds(lambda moment, suffix: f"pgdata-{moment}-{suffix}.json", moments, hex4),
    st.sampled_from(["inventory.json", ".json", "x.json", "a\x1bb.json", "pgdata-x.json"]),
    st.text(st.characters(blacklist_characters="/\x00"), min_size=1, max_size=12).map(
        lambda text: text + ".json"
    ),
)


@st.composite
def metadata_files(draw) -> tuple[str, bytes]:
    """(name, content) of a file in a store: a valid record under its own name or another's,
    truncated or bit-flipped, random JSON or bytes, or a mutated record."""
    kind = draw(
        st.sampled_from(["valid", "misnamed", "truncated", "flipped", "json", "bytes", "mutated"])
    )
    document = draw(mutated_documents() if kind == "mutated" else valid_documents())
    text = json.dumps(document, indent=2).encode()
    backup_id = document.get("id")
    name = catalog.metadata_name(backup_id) if isinstance(backup_id, str) else ""
    if kind == "misnamed" or "/" in name or "\x00" in name or not name.strip("."):
        name = draw(file_names)
    elif kind == "truncated":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif kind == "flipped":
        for _ in range(draw(st.integers(1, 3))):
            text = _flip(text, draw(st.integers(0, len(text))), draw(st.integers(0, 7)))
    elif kind == "json":
        text = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        text = draw(st.binary(max_size=200))
    return name, text


def _expected(name: str, data: bytes) -> tuple[str, str | None]:
    """What `list_records` must make of one file, worked out from `parse_record` alone:
    ("record", id), ("problem", claimed source) or ("ignored", None). A file whose name is no
    valid object name (control characters) cannot be read at all."""
    try:
        check_name(name)
        record = catalog.parse_record(json.loads(data))
    except (ValueError, RecursionError):
        return ("problem", None) if catalog.could_be_backup_of(name) else ("ignored", None)
    if name == catalog.metadata_name(record.id):
        return "record", record.id
    return "problem", record.source


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-stores")


def fresh_store(stores: Path, files: list[tuple[str, bytes]]) -> tuple[LocalStorage, dict]:
    """A new store holding `files` (a later file of one name replaces an earlier one)."""
    root = stores / uuid.uuid4().hex
    root.mkdir()
    written = {}
    for name, data in files:
        try:
            (root / name).write_bytes(data)
        except OSError:  # a name the filesystem refuses (too long): not in the store
            continue
        written[name] = data
    return LocalStorage(root), written


@fuzz(60)
@given(files=st.lists(metadata_files(), min_size=1, max_size=6))
def test_list_records_lists_exactly_the_valid_records(stores, files):
    """A store of valid, misnamed, truncated, bit-flipped, random and mutated metadata files
    lists exactly the files that hold a valid record under their own name, reports the others
    named like backups (or claiming one) as problems, and never raises."""
    storage, written = fresh_store(stores, files)
    try:
        listing = catalog.list_records(storage)
        expected = {name: _expected(name, data) for name, data in written.items()}

        listed_ids = sorted(record.id for record in listing)
        assert listed_ids == sorted(ident for kind, ident in expected.values() if kind == "record")
        assert sorted(problem.name for problem in listing.problems) == sorted(
            name for name, (kind, _) in expected.items() if kind == "problem"
        )
        for record in listing:
            assert record.location == storage.location(record.archive)
            record.location = ""
            check_record(record)
        assert [record.created for record in listing] == sorted(r.created for r in listing)
    finally:
        shutil.rmtree(storage.root)


index_documents = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"format": st.sampled_from([1, 1, 2, "1", True]), "entries": json_values}
    ),
    st.fixed_dictionaries(
        {
            "format": st.just(1),
            "entries": st.lists(
                st.fixed_dictionaries(
                    {
                        "name": st.one_of(file_names, st.text(max_size=8)),
                        "size": st.one_of(st.integers(), st.booleans(), st.text(max_size=3)),
                        "version": st.one_of(st.text(max_size=8), st.none()),
                        "record": st.one_of(valid_documents(), mutated_documents(), json_values),
                    }
                ),
                max_size=4,
            ),
        }
    ),
)


@fuzz(150)
@given(document=index_documents)
def test_index_parse_fails_only_with_value_error(document):
    """Any index document is read into {(name, size, version): document} with typed keys, or
    refused with `ValueError` (which `read` turns into "no index")."""
    try:
        parsed = list(record_index.entries_of(json.dumps(document, separators=(",", ":"))))
    except ValueError:
        return
    for (name, size, version), record in parsed:
        assert isinstance(name, str) and type(size) is int and isinstance(version, str)
        assert version and isinstance(record, dict)


index_mutations = st.sampled_from(["record", "size", "version", "name", "drop", "duplicate"])


@fuzz(40)
@given(
    files=st.lists(metadata_files(), min_size=1, max_size=5),
    forged=st.one_of(index_documents.map(json.dumps).map(str.encode), st.binary(max_size=100)),
    mutations=st.lists(st.tuples(index_mutations, json_values), max_size=3),
    seed=st.integers(0, 2**32),
)
def test_a_damaged_or_forged_index_never_changes_the_listing(
    stores, files, forged, mutations, seed
):
    """A random or forged index object, or the store's real index with its entries mutated
    (records swapped for junk, sizes and versions changed, entries dropped or repeated),
    costs file reads but never raises, and never lists a record that is invalid, misnamed, or
    of a file the store does not hold."""
    storage, written = fresh_store(stores, files)
    try:
        truth = catalog.list_records(storage)
        storage.write_bytes(record_index.INDEX_NAME, forged)
        assert [r.id for r in catalog.list_records(storage)] == [r.id for r in truth]

        catalog.refresh_index(storage)  # a real index, then damaged
        real = json.loads(storage.read_bytes(record_index.INDEX_NAME))
        chooser = random.Random(seed)
        for kind, value in mutations:
            if not real["entries"]:
                break
            entry = chooser.choice(real["entries"])
            if kind == "drop":
                real["entries"].remove(entry)
            elif kind == "duplicate":
                real["entries"].append(dict(entry))
            else:
                entry[kind] = value
        storage.write_bytes(record_index.INDEX_NAME, json.dumps(real).encode())
        listing = catalog.list_records(storage)

        for record in listing:
            assert catalog.metadata_name(record.id) in written
            record.location = ""
            check_record(record)
        # A damaged entry is read from its file again: the listing is the files' own.
        assert [r.id for r in listing] == [r.id for r in truth]
    finally:
        shutil.rmtree(storage.root)


# --- snapshot records ------------------------------------------------------------------------


def valid_snapshot() -> dict:
    return snapshots.SnapshotRecord(
        id="shop-20261126T095132Z-1a2b",
        project="shop",
        created="2026-11-26T09:51:32.000Z",
        tags=["pre-upgrade"],
        members=[snapshots.SnapshotMember("shop_db-20261126T095132Z-aaaa", "shop_db", "volume")],
        skipped=[{"source": "/x", "kind": "path", "reason": "bind mount"}],
        compose_files=["/srv/shop/compose.yaml"],
    ).to_dict()


snapshot_fields = st.sampled_from([*valid_snapshot(), "extra"])


@st.composite
def mutated_snapshots(draw) -> dict:
    document = valid_snapshot()
    for _ in range(draw(st.integers(1, 3))):
        name = draw(snapshot_fields)
        if draw(st.booleans()):
            document.pop(name, None)
        else:
            document[name] = draw(json_values)
    return document


@fuzz(200)
@given(document=st.one_of(mutated_snapshots(), json_values))
@example(document={**valid_snapshot(), "skipped": 5})
def test_parse_snapshot_fails_only_with_value_error(document):
    """Any snapshot document (random, or a valid one mutated) gives a record whose ids are
    safe names, or the `ValueError` `parse_snapshot` documents."""
    try:
        record = snapshots.parse_snapshot(document)
    except ValueError:
        return
    assert catalog.SAFE_ID.fullmatch(record.id)
    assert record.members and all(catalog.SAFE_ID.fullmatch(m.backup) for m in record.members)


@fuzz(60)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.builds(lambda cut: json.dumps(valid_snapshot()).encode()[:cut], st.integers(0, 400)),
        st.builds(
            lambda position, bit: _flip(json.dumps(valid_snapshot()).encode(), position, bit),
            st.integers(0, 400),
            st.integers(0, 7),
        ),
        json_values.map(json.dumps).map(str.encode),
    )
)
def test_read_snapshot_fails_only_with_metadata_corrupt(stores, data):
    """A snapshot record of random bytes, cut short, bit-flipped or random JSON is read or
    refused with `MetadataCorrupt`, never a traceback."""
    storage, _ = fresh_store(stores, [])
    try:
        snapshot_id = valid_snapshot()["id"]
        storage.write_bytes(snapshots.record_name(snapshot_id), data)
        try:
            record = snapshots.read_snapshot(storage, snapshot_id)
        except errors.MetadataCorrupt as exc:
            assert "snapshot" in str(exc)
            return
        assert record.id == snapshot_id
    finally:
        shutil.rmtree(storage.root)


# --- bounded memory ----------------------------------------------------------------------------


def test_list_records_refuses_huge_and_special_files_in_bounded_memory(stores):
    """A 1 GiB metadata file (sparse), a symlink to /dev/zero and a FIFO, each named like a
    backup, are problems of the listing; nothing reads them whole or waits on them."""
    storage, _ = fresh_store(stores, [])
    try:
        with (storage.root / "pgdata-20261126T095132Z-0001.json").open("wb") as stream:
            stream.truncate(1 << 30)
        os.symlink("/dev/zero", storage.root / "pgdata-20261126T095132Z-0002.json")
        os.mkfifo(storage.root / "pgdata-20261126T095132Z-0003.json")
        peak, listing = peak_memory(lambda: catalog.list_records(storage))

        assert isinstance(listing, catalog.Listing), listing
        assert not listing
        assert [problem.name[-9:] for problem in listing.problems] == [
            "0001.json",
            "0002.json",
            "0003.json",
        ]
        assert "larger than 1 MiB" in listing.problems[0].reason
        assert peak < 2 * MIB, f"peak {peak / MIB:.1f} MiB"
    finally:
        shutil.rmtree(storage.root)


def test_list_records_reads_a_maximal_metadata_file_in_bounded_memory(stores):
    """A metadata file of exactly `MAX_METADATA_BYTES` of the costliest JSON (empty objects,
    ~25x their size as Python objects) is one problem, read in bounded memory."""
    storage, _ = fresh_store(stores, [])
    try:
        size = catalog.MAX_METADATA_BYTES
        payload = b"[" + b"{}," * ((size - 4) // 3) + b"{}]"
        (storage.root / "pgdata-20261126T095132Z-0001.json").write_bytes(payload.ljust(size))
        peak, listing = peak_memory(lambda: catalog.list_records(storage))

        assert isinstance(listing, catalog.Listing), listing
        assert [problem.reason for problem in listing.problems] == ["not a JSON object"]
        assert peak < 48 * MIB, f"peak {peak / MIB:.1f} MiB"
    finally:
        shutil.rmtree(storage.root)


def test_index_read_ignores_an_oversized_index_in_bounded_memory(stores):
    """An index past `MAX_INDEX_BYTES` (sparse) is passed over without being read."""
    storage, _ = fresh_store(stores, [])
    try:
        (storage.root / "index").mkdir()
        with (storage.root / record_index.INDEX_NAME).open("wb") as stream:
            stream.truncate(record_index.MAX_INDEX_BYTES + 1)
        peak, outcome = peak_memory(lambda: record_index.read(storage, set()))

        assert outcome == ({}, 0)
        assert peak < MIB, f"peak {peak / MIB:.1f} MiB"
    finally:
        shutil.rmtree(storage.root)


def test_index_read_of_a_maximal_index_stays_in_bounded_memory(stores):
    """An index of the costliest JSON (empty objects as entries), measured at 1 MiB and
    scaled to `MAX_INDEX_BYTES`, must stay under 256 MiB: every listing reads it."""
    storage, _ = fresh_store(stores, [])
    try:
        payload = b'{"format":1,"entries":[' + b"{}," * (MIB // 3) + b"{}]}"
        storage.write_bytes(record_index.INDEX_NAME, payload)
        peak, outcome = peak_memory(lambda: record_index.read(storage, set()))

        assert outcome == ({}, 0)
        projected = peak / len(payload) * record_index.MAX_INDEX_BYTES
        assert projected < 256 * MIB, f"{projected / MIB:.0f} MiB at MAX_INDEX_BYTES"
    finally:
        shutil.rmtree(storage.root)

"""Round trips through `opskit volume backup|list|restore` as a user runs them, on the real engine.

Every restore is compared entry by entry (type, mode, owner, size, sha256, link target, hardlink
groups, file mtime, the root's own mode and owner) against the tricky tree of `trees.py`.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from opskit import __version__
from tests.integration import trees
from tests.integration.opskit_cli import (
    STOPPABLE_COMMAND,
    backup,
    describe,
    list_backups,
    restore,
    run_opskit,
    started_at,
    wait_for_next_second,
)

pytestmark = pytest.mark.integration

SUFFIXES = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}
# How a user unpacks each kind of archive by hand, without opskit (GNU tar as root keeps
# numeric owners and permission bits).
BY_HAND = {
    "zstd": "zstd -d < {archive} | tar -x -C {directory}",
    "gzip": "gzip -d < {archive} | tar -x -C {directory}",
    "none": "tar -x -C {directory} < {archive}",
}


@pytest.fixture(scope="module")
def tricky_volume(docker_client: docker.DockerClient):
    """A volume holding the tricky tree, shared by this module's tests (they only read it)."""
    name = f"opskit-test-tricky-{datetime.now(UTC).strftime('%H%M%S%f')}"
    docker_client.volumes.create(
        name, labels={"com.example.app": "billing", "com.example.tier": "db"}
    )
    try:
        trees.populate_tricky_tree(docker_client, name)
        snapshot = trees.snapshot(docker_client, name)
        trees.assert_is_tricky(snapshot)
        yield name, snapshot
    finally:
        docker_client.volumes.get(name).remove(force=True)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def _new_volume_name(resources, unique_name: str, suffix: str) -> str:
    """A volume opskit will create: registered first, so teardown removes it whatever happens."""
    return resources.track_volume(f"{unique_name}-{suffix}")


@pytest.mark.parametrize("transfer", ["fifo", "archive-api"])
def test_roundtrip_volume_to_new_volume_keeps_every_entry(
    transfer, tricky_volume, docker_client, resources, unique_name, store
):
    source, expected = tricky_volume
    target = _new_volume_name(resources, unique_name, "restored")

    record = backup(source, store, "--transfer", transfer)
    result = restore(source, store, "--into", target, "--transfer", transfer)

    assert record["transfer"] == transfer
    assert result["transfer"] == transfer
    assert result["created_target"] is True
    assert result["target"] == target and result["target_kind"] == "volume"
    assert result["backup"]["id"] == record["id"]
    trees.assert_same_tree(expected, trees.snapshot(docker_client, target), f"{transfer} restore")


@pytest.mark.parametrize(
    ("backup_transfer", "restore_transfer"), [("fifo", "archive-api"), ("archive-api", "fifo")]
)
def test_roundtrip_archive_of_one_transfer_restores_through_the_other(
    backup_transfer, restore_transfer, tricky_volume, docker_client, resources, unique_name, store
):
    source, expected = tricky_volume
    target = _new_volume_name(resources, unique_name, "crossed")

    backup(source, store, "--transfer", backup_transfer)
    restore(source, store, "--into", target, "--transfer", restore_transfer)

    trees.assert_same_tree(
        expected,
        trees.snapshot(docker_client, target),
        f"{backup_transfer} archive restored with {restore_transfer}",
    )


@pytest.mark.parametrize("transfer", ["fifo", "archive-api"])
def test_roundtrip_keeps_symlink_owners(transfer, docker_client, resources, unique_name, store):
    """Numeric owners of symlinks come back too ("symlinks exactly as they were")."""
    source = resources.volume(f"{unique_name}-links")
    trees.run_in_tree(
        docker_client,
        source,
        "set -e\necho x > file\nln -s file link-owned\nchown -h 1234:5678 link-owned\n"
        "ln -s /nonexistent dangling-owned\nchown -h 999:999 dangling-owned",
    )
    expected = trees.snapshot(docker_client, source)
    assert expected.entries["link-owned"].uid == 1234, "set-up: chown -h did not apply"
    target = _new_volume_name(resources, unique_name, "links-restored")

    backup(source, store, "--transfer", transfer)
    restore(source, store, "--into", target, "--transfer", transfer)

    trees.assert_same_tree(expected, trees.snapshot(docker_client, target), "symlink owners")


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_roundtrip_each_compression(
    compression, tricky_volume, docker_client, resources, unique_name, store
):
    source, expected = tricky_volume
    target = _new_volume_name(resources, unique_name, compression)

    record = backup(source, store, "--compress", compression)
    restore(source, store, "--into", target)

    assert record["compression"] == compression
    assert record["transfer"] == "fifo", "auto must pick the FIFO path for a local engine"
    assert record["location"].endswith(SUFFIXES[compression])
    assert Path(record["location"]).is_file()
    trees.assert_same_tree(expected, trees.snapshot(docker_client, target), compression)


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_archive_restores_by_hand_without_opskit(
    compression, tricky_volume, docker_client, store, tmp_path
):
    source, expected = tricky_volume
    record = backup(source, store, "--compress", compression)
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()

    command = BY_HAND[compression].format(archive=record["location"], directory=by_hand)
    unpacked = subprocess.run(["sh", "-c", command], capture_output=True, text=True)

    assert unpacked.returncode == 0, f"{command}\n{unpacked.stderr}"
    trees.assert_same_tree(
        expected, trees.snapshot(docker_client, str(by_hand)), f"`{command}` on the host"
    )


def test_zstd_archive_is_a_standard_zstd_stream_of_a_tar(tricky_volume, store):
    """The .tar.zst is a plain zstd stream that the zstd CLI tests clean, holding a plain tar."""
    source, expected = tricky_volume
    record = backup(source, store)
    archive = record["location"]

    checked = subprocess.run(["zstd", "-t", "-q", archive], capture_output=True, text=True)
    listed = subprocess.run(
        ["sh", "-c", f"zstd -d < {archive} | tar -t"], capture_output=True, text=True
    )

    assert checked.returncode == 0, checked.stderr
    assert listed.returncode == 0, listed.stderr
    names = {line.removeprefix("./").rstrip("/") for line in listed.stdout.splitlines()}
    assert trees.LONG_NAME in names
    assert f"{trees.DEEP_DIRECTORY}/bottom.txt" in names


def test_roundtrip_bind_mounted_host_directory(docker_client, resources, unique_name, tmp_path):
    source_directory = tmp_path / "app data"  # a space in the path, as in /srv/app data
    source_directory.mkdir()
    trees.populate_tricky_tree(docker_client, str(source_directory))
    expected = trees.snapshot(docker_client, str(source_directory))
    trees.assert_is_tricky(expected)
    store = tmp_path / "backups"
    into_path = tmp_path / "restored" / "here"  # missing: opskit creates it
    into_volume = _new_volume_name(resources, unique_name, "from-path")

    record = backup(str(source_directory), store)
    to_path = restore(str(source_directory), store, "--into", str(into_path))
    to_volume = restore(str(source_directory), store, "--into", into_volume)

    assert record["kind"] == "path"
    assert record["source"] == str(source_directory)
    assert record["volume_driver"] is None and record["volume_labels"] == {}
    assert to_path["target_kind"] == "path" and to_path["target"] == str(into_path)
    assert to_volume["target_kind"] == "volume" and to_volume["created_target"] is True
    trees.assert_same_tree(expected, trees.snapshot(docker_client, str(into_path)), "--into path")
    trees.assert_same_tree(expected, trees.snapshot(docker_client, into_volume), "--into volume")


def test_bind_path_source_given_with_trailing_slash_is_the_same_source(docker_client, tmp_path):
    source_directory = tmp_path / "srv"
    source_directory.mkdir()
    trees.populate_files(docker_client, str(source_directory), {"a.txt": "a\n"})
    store = tmp_path / "backups"

    record = backup(f"{source_directory}/", store)

    assert record["source"] == str(source_directory)
    assert [item["id"] for item in list_backups(store, "--volume", str(source_directory))] == [
        record["id"]
    ]


def test_restore_latest_and_a_given_backup_id(docker_client, resources, unique_name, store):
    source = resources.volume(f"{unique_name}-versions")
    trees.populate_files(docker_client, source, {"version.txt": "one\n", "only-in-one": "1\n"})
    first_tree = trees.snapshot(docker_client, source)
    first = backup(source, store)
    wait_for_next_second()
    trees.run_in_tree(docker_client, source, "rm only-in-one && echo two > version.txt")
    second_tree = trees.snapshot(docker_client, source)
    second = backup(source, store)
    default_target = _new_volume_name(resources, unique_name, "default")
    latest_target = _new_volume_name(resources, unique_name, "latest")
    first_target = _new_volume_name(resources, unique_name, "first")

    by_default = restore(source, store, "--into", default_target)
    by_latest = restore(source, store, "--into", latest_target, "--backup", "latest")
    by_id = restore(source, store, "--into", first_target, "--backup", first["id"])

    assert by_default["backup"]["id"] == second["id"]
    assert by_latest["backup"]["id"] == second["id"]
    assert by_id["backup"]["id"] == first["id"]
    trees.assert_same_tree(second_tree, trees.snapshot(docker_client, default_target), "default")
    trees.assert_same_tree(second_tree, trees.snapshot(docker_client, latest_target), "latest")
    trees.assert_same_tree(first_tree, trees.snapshot(docker_client, first_target), "--backup ID")


def _parse_utc(text: str) -> datetime:
    assert text.endswith("Z"), f"created {text!r} is not UTC ISO 8601 with Z"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_list_shows_every_field_checked_against_the_archive_on_disk(
    docker_client, resources, unique_name, store
):
    first_volume = resources.volume(f"{unique_name}-a")
    second_volume = resources.volume(f"{unique_name}-b")
    trees.populate_files(docker_client, first_volume, {"a.txt": "a\n" * 1000})
    trees.populate_files(docker_client, second_volume, {"b.txt": "b\n"})
    before = datetime.now(UTC).replace(microsecond=0)
    first = backup(first_volume, store, "--tag", "nightly", "--tag", "before-upgrade")
    wait_for_next_second()
    second = backup(second_volume, store, "--compress", "gzip")
    after = datetime.now(UTC)

    everything = list_backups(store)
    only_first = list_backups(store, "--volume", first_volume)
    missing = list_backups(store, "--volume", f"{unique_name}-never-backed-up")

    assert [item["id"] for item in everything] == [first["id"], second["id"]]  # oldest first
    assert [item["id"] for item in only_first] == [first["id"]]
    assert missing == []
    pairs = ((everything[0], first, first_volume), (everything[1], second, second_volume))
    for listed, made, volume in pairs:
        archive = Path(listed["location"])
        assert archive.is_file(), listed
        assert archive.parent == store
        assert listed["size"] == archive.stat().st_size
        assert listed["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        assert listed["source"] == volume
        assert listed["kind"] == "volume"
        assert before <= _parse_utc(listed["created"]) <= after
        assert listed == made, "list and backup disagree"
    assert everything[0]["tags"] == ["nightly", "before-upgrade"]
    assert everything[0]["compression"] == "zstd"
    assert everything[1]["tags"] == []
    assert everything[1]["compression"] == "gzip"


def test_list_of_an_empty_directory_is_an_empty_array(tmp_path):
    (tmp_path / "empty").mkdir()

    assert list_backups(tmp_path / "empty") == []


def test_list_passes_over_other_json_files_in_the_store(
    docker_client, resources, unique_name, store
):
    """A backup directory may hold other JSON files (a manifest, an inventory)."""
    volume = resources.volume(f"{unique_name}-foreign")
    trees.populate_files(docker_client, volume, {"a": "a\n"})
    record = backup(volume, store)
    (store / "inventory.json").write_text('["db", "cache"]')
    (store / "settings.json").write_text('{"retention": 7}')

    result = run_opskit("volume", "list", "--from", str(store), "--json")

    assert result.returncode == 0, describe(result)
    assert "Traceback" not in result.stderr
    assert [item["id"] for item in json.loads(result.stdout)] == [record["id"]]


def test_list_without_json_prints_a_table(docker_client, resources, unique_name, store):
    volume = resources.volume(f"{unique_name}-table")
    trees.populate_files(docker_client, volume, {"a": "a\n"})
    record = backup(volume, store, "--tag", "weekly")

    result = run_opskit("volume", "list", "--from", str(store))

    assert result.returncode == 0, result.stderr
    assert record["id"] in result.stdout
    assert "weekly" in result.stdout
    assert result.stderr.strip() == ""


def test_backup_without_json_prints_a_summary(docker_client, resources, unique_name, store):
    volume = resources.volume(f"{unique_name}-text")
    trees.populate_files(docker_client, volume, {"a": "a\n"})

    result = run_opskit("volume", "backup", volume, "--to", str(store))

    assert result.returncode == 0, result.stderr
    [record] = list_backups(store)
    assert record["id"] in result.stdout
    assert record["sha256"] in result.stdout
    assert not result.stdout.lstrip().startswith(("{", "["))


def test_metadata_file_beside_the_archive(docker_client, resources, unique_name, store):
    volume = resources.volume(
        f"{unique_name}-meta", labels={"com.example.app": "billing", "team": "payments"}
    )
    trees.populate_files(docker_client, volume, {"data.txt": "data\n"})
    user = resources.container(command=STOPPABLE_COMMAND, volumes={volume: {"bind": "/data"}})
    _, started_before = started_at(docker_client, user.id)
    restored = _new_volume_name(resources, unique_name, "meta-restored")

    record = backup(volume, store, "--stop-containers", "--tag", "t1")
    restore(volume, store, "--into", restored)

    archive = Path(record["location"])
    metadata_path = store / f"{record['id']}.json"
    assert sorted(path.name for path in store.iterdir()) == sorted(
        [archive.name, metadata_path.name, "index"]
    )
    assert [path.name for path in (store / "index").iterdir()] == ["records.json"]
    metadata = json.loads(metadata_path.read_text())
    assert metadata["source"] == volume
    assert metadata["kind"] == "volume"
    assert metadata["volume_driver"] == "local"
    assert metadata["volume_labels"] == {"com.example.app": "billing", "team": "payments"}
    assert metadata["tool_version"] == __version__
    assert metadata["hostname"] == socket.gethostname()
    assert metadata["stopped_containers"] == [user.name]
    assert metadata["compression"] == "zstd"
    assert metadata["tags"] == ["t1"]
    assert metadata["size"] == archive.stat().st_size
    assert metadata["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert metadata["created"] == record["created"]
    assert abs(_parse_utc(metadata["created"]) - datetime.now(UTC)) < timedelta(minutes=5)
    # Written last: the metadata file is never older than its archive.
    assert metadata_path.stat().st_mtime_ns >= archive.stat().st_mtime_ns
    running, started_after = started_at(docker_client, user.id)
    assert running and started_after != started_before
    # A volume created by restore gets the labels of the backed-up volume.
    assert docker_client.volumes.get(restored).attrs["Labels"] == metadata["volume_labels"]

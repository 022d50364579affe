"""Signals and kills of the commands built on backup and restore: an encrypted backup and
restore, a compose-project snapshot, and a prune on S3 struck between removals. Same promises
as test_signals.py."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from opskit.config.targets import TargetConfig
from opskit.repository import catalog
from opskit.storage.s3 import S3Storage
from tests.faults.harness import (
    MiB,
    engine_leftovers,
    expect_interrupted,
    opskit_entries,
    partial_bytes_at_least,
    run_ok,
    staged_bytes_at_least,
    store_leftovers,
    strike_when,
)
from tests.integration import trees
from tests.integration.daemon_fixtures import assert_store_is_whole
from tests.integration.opskit_cli import (
    STOPPABLE_COMMAND,
    list_backups,
    start_opskit,
    volume_mountpoint,
)
from tests.unit.repository.test_catalog import _record

pytestmark = pytest.mark.integration


# --- encryption --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def age_key(tmp_path_factory):
    directory = tmp_path_factory.mktemp("age")
    identity = directory / "key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return identity, recipient


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_struck_encrypted_backup_lists_nothing(
    signal_name, docker_client, resources, source, tmp_path, age_key
):
    _, recipient = age_key
    store = tmp_path / "store"
    process = start_opskit(
        "volume", "backup", source, "--to", str(store), "--compress", "gzip",
        "--encrypt-to", recipient, "--json",
    )  # fmt: skip
    result = strike_when(process, partial_bytes_at_least(store, 4 * MiB), signal_name, "bytes")
    expect_interrupted(result, signal_name)
    if signal_name == "SIGKILL":
        run_ok("volume", "backup", resources.volume(), "--to", str(store))
    assert [b for b in list_backups(store) if b["source"] == source] == []
    assert store_leftovers(store) == []
    assert engine_leftovers(docker_client, source) == []


def test_a_struck_encrypted_restore_leaves_the_target_as_it_was(
    docker_client, source, old_target, tmp_path, age_key
):
    identity, recipient = age_key
    store = tmp_path / "store"
    run_ok("volume", "backup", source, "--to", str(store), "--compress", "gzip",
           "--encrypt-to", recipient)  # fmt: skip
    target, old_tree = old_target
    process = start_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force",
        "--identity", str(identity),
    )  # fmt: skip
    mountpoint = volume_mountpoint(docker_client, target)
    result = strike_when(process, staged_bytes_at_least(mountpoint, 4 * MiB), "SIGTERM", "unpack")
    expect_interrupted(result, "SIGTERM")
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "target")
    assert opskit_entries(docker_client, target) == []
    # The forced restore's safety backup is whole and encrypted to the same recipient.
    (safety,) = [b for b in list_backups(store) if b["source"] == target]
    assert safety["encryption"] is not None and "pre-restore" in safety["tags"]
    assert_store_is_whole(store)


# --- a compose-project snapshot ----------------------------------------------------------------


def test_a_struck_snapshot_starts_the_project_again_and_records_no_snapshot(
    docker_client, resources, source, unique_name, tmp_path
):
    project = f"{unique_name}-proj"
    labels = {"com.docker.compose.project": project}
    small = resources.volume(f"{unique_name}-small", labels=labels)
    apps = [
        resources.container(command=STOPPABLE_COMMAND, labels={**labels,
                            "com.docker.compose.service": name},
                            volumes={volume: {"bind": "/data"}})
        for name, volume in (("db", source), ("cache", small))
    ]  # fmt: skip
    store = tmp_path / "store"
    process = start_opskit(
        "volume", "snapshot", "--project", project, "--to", str(store), "--stop-containers",
        "--compress", "gzip", "--json",
    )  # fmt: skip
    result = strike_when(process, partial_bytes_at_least(store, 4 * MiB), "SIGTERM", "bytes")
    expect_interrupted(result, "SIGTERM")
    for app in apps:
        app.reload()
        assert app.status == "running", f"{app.name} was not started again"
    assert not (store / "snapshots").exists() or list((store / "snapshots").iterdir()) == []
    assert_store_is_whole(store)
    assert store_leftovers(store) == []


# --- prune on S3, struck between removals -------------------------------------------------------


def test_a_prune_killed_between_removals_never_lists_a_backup_without_its_archive(
    s3_bucket, s3_env, s3_client
):
    prefix = "prune-kill"
    storage = S3Storage.from_target(TargetConfig(url=f"s3://{s3_bucket}/{prefix}"))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        for hour in range(120):
            record = _record("app", start + timedelta(hours=hour))
            storage.write_bytes(record.archive, b"x")
            catalog.write_record(storage, record)
    finally:
        storage.close()
    url = f"s3://{s3_bucket}/{prefix}"

    def metadata_count() -> int:
        answer = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=prefix + "/")
        return sum(item["Key"].endswith(".json") for item in answer.get("Contents", []))

    process = start_opskit("volume", "prune", "--from", url, "--keep-last", "10", env=s3_env)
    result = strike_when(process, lambda: metadata_count() <= 110, "SIGKILL", "10 removals")
    assert result.returncode != 0

    listed = json.loads(run_ok("volume", "list", "--from", url, "--json", env=s3_env).stdout)
    keys = {item["Key"] for item in s3_client.list_objects_v2(
        Bucket=s3_bucket, Prefix=prefix + "/").get("Contents", [])}  # fmt: skip
    for record in listed:
        assert f"{prefix}/{record['archive']}" in keys, f"{record['id']} lost its archive"
    assert 10 < len(listed) < 120, len(listed)
    # The next prune finishes: the ten newest stay, and orphaned archives go too.
    run_ok("volume", "prune", "--from", url, "--keep-last", "10", env=s3_env)
    listed = json.loads(run_ok("volume", "list", "--from", url, "--json", env=s3_env).stdout)
    assert len(listed) == 10
    keys = {item["Key"] for item in s3_client.list_objects_v2(
        Bucket=s3_bucket, Prefix=prefix + "/").get("Contents", [])}  # fmt: skip
    archives = {k for k in keys if not k.endswith(".json") and "/index/" not in k}
    assert archives == {f"{prefix}/{record['archive']}" for record in listed}

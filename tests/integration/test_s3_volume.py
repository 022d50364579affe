"""`opskit volume backup|list|restore` through s3://bucket/prefix, as a user runs them.

The CLI runs in a subprocess; boto3's standard chain reaches the loopback moto_server through
AWS_ENDPOINT_URL and test credentials (the `s3_env` fixture). Restores are compared entry by
entry against the tricky tree of `trees.py`, as for a local directory.
"""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import time
from pathlib import Path

import docker
import pytest

from opskit.storage import hosts
from tests.integration import trees
from tests.integration.opskit_cli import (
    REPOSITORY,
    assert_failed_with_one_line,
    backup,
    helpers_using,
    list_backups,
    opskit_command,
    opskit_environment,
    restore,
    run_opskit,
    wait_for_next_second,
)
from tests.s3_fixtures import AuthS3, free_port

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def keys(client, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [entry["Key"] for page in pages for entry in page.get("Contents", [])]


def uploads(client, bucket: str) -> list[dict]:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@pytest.fixture
def tricky_volume(resources, unique_name: str, docker_client: docker.DockerClient):
    name = resources.volume(f"{unique_name}-tricky")
    trees.populate_tricky_tree(docker_client, name)
    snapshot = trees.snapshot(docker_client, name)
    trees.assert_is_tricky(snapshot)
    return name, snapshot


def test_s3_roundtrip_list_and_restore_latest_and_by_id(
    s3_env, s3_bucket, s3_client, tricky_volume, docker_client, resources, unique_name
) -> None:
    source, first_tree = tricky_volume
    target = f"s3://{s3_bucket}/docker/backups"

    first = backup(source, target, "--tag", "s3")
    trees.populate_files(docker_client, source, {"added/after-first.txt": "second backup\n"})
    second_tree = trees.snapshot(docker_client, source)
    wait_for_next_second()
    second = backup(source, target)

    listed = list_backups(target)
    assert [record["id"] for record in listed] == [first["id"], second["id"]]
    assert listed[0]["location"] == f"{target}/{first['archive']}"
    assert listed[0]["tags"] == ["s3"]
    assert sorted(keys(s3_client, s3_bucket)) == sorted(
        [
            "docker/backups/index/records.json",  # the record index (repository/index.py)
            *(
                f"docker/backups/{name}"
                for record in (first, second)
                for name in (record["archive"], f"{record['id']}.json")
            ),
        ]
    )
    assert uploads(s3_client, s3_bucket) == []

    latest = resources.track_volume(f"{unique_name}-latest")
    result = restore(source, target, "--into", latest)
    assert result["backup"]["id"] == second["id"]
    trees.assert_same_tree(second_tree, trees.snapshot(docker_client, latest), "latest")

    by_id = resources.track_volume(f"{unique_name}-by-id")
    result = restore(source, target, "--into", by_id, "--backup", first["id"])
    assert result["backup"]["id"] == first["id"]
    trees.assert_same_tree(first_tree, trees.snapshot(docker_client, by_id), "first backup")


def test_s3_named_target_streams_a_large_archive_in_parts(
    s3_env, s3_bucket, s3_client, docker_client, resources, unique_name, tmp_path
) -> None:
    """A config target with S3 settings: 5 MiB parts, a storage class and SSE on the archive,
    under this host's prefix (an S3 target's default)."""
    source = resources.volume(f"{unique_name}-random")
    trees.populate_random(docker_client, source, megabytes=24, files=3)
    expected = trees.snapshot(docker_client, source)
    config = tmp_path / "opskit.yaml"
    config.write_text(
        "targets:\n"
        "  offsite:\n"
        f"    url: s3://{s3_bucket}/named\n"
        "    part_size: 5MiB\n"
        "    max_concurrency: 3\n"
        "    storage_class: STANDARD_IA\n"
        "    sse: AES256\n"
    )
    environment = {"OPSKIT_CONFIG": str(config)}

    record = _json(
        run_opskit("volume", "backup", source, "--to", "offsite", "--json", env=environment)
    )
    prefix = f"named/{hosts.this_host()}"
    assert record["location"] == f"s3://{s3_bucket}/{prefix}/{record['archive']}"

    archive = s3_client.head_object(Bucket=s3_bucket, Key=f"{prefix}/{record['archive']}")
    parts = int(archive["ETag"].strip('"').rpartition("-")[2])
    assert parts == -(-record["size"] // (5 * MiB)) >= 5
    assert archive["StorageClass"] == "STANDARD_IA"
    assert archive["ServerSideEncryption"] == "AES256"
    metadata = s3_client.head_object(Bucket=s3_bucket, Key=f"{prefix}/{record['id']}.json")
    assert "StorageClass" not in metadata  # metadata stays STANDARD
    assert metadata["ServerSideEncryption"] == "AES256"

    target = resources.track_volume(f"{unique_name}-random-restored")
    _json(
        run_opskit(
            "volume", "restore", source, "--from", "offsite", "--into", target, "--json",
            env=environment,
        )
    )  # fmt: skip
    trees.assert_same_tree(expected, trees.snapshot(docker_client, target), "large restore")


def _json(result: subprocess.CompletedProcess[str]):
    assert result.returncode == 0, f"{result.args} exited {result.returncode}\n{result.stderr}"
    return json.loads(result.stdout)


def _replace_in_tar(data: bytes) -> bytes:
    """Alter file data inside an uncompressed tar: tar still reads it, only sha256 can tell."""
    position = data.index(b"hello opskit")
    return data[:position] + b"HELLO" + data[position + 5 :]


def _append_skippable_zstd_frame(data: bytes) -> bytes:
    """Append a zstd skippable frame: the stream still decompresses, the sha256 differs."""
    payload = b"not part of the backup"
    return data + struct.pack("<II", 0x184D2A50, len(payload)) + payload


TAMPERING = {"none": _replace_in_tar, "zstd": _append_skippable_zstd_frame}


@pytest.mark.parametrize("compression", list(TAMPERING))
def test_s3_restore_of_a_tampered_archive_fails_on_the_checksum(
    compression, s3_env, s3_bucket, s3_client, tricky_volume, docker_client, resources, unique_name
) -> None:
    source, _ = tricky_volume
    target = f"s3://{s3_bucket}/tampered"
    record = backup(source, target, "--compress", compression)
    key = f"tampered/{record['archive']}"
    data = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=TAMPERING[compression](data))
    into = resources.volume(f"{unique_name}-untouched")
    empty = trees.snapshot(docker_client, into)

    result = run_opskit("volume", "restore", source, "--from", target, "--into", into)

    assert_failed_with_one_line(result, "checksum", record["archive"])
    trees.assert_same_tree(empty, trees.snapshot(docker_client, into), "restore target")
    assert helpers_using(docker_client, into) == []


def test_s3_missing_bucket_is_one_line(s3_env, tricky_volume) -> None:
    source, _ = tricky_volume
    for arguments in (
        ("volume", "backup", source, "--to", "s3://opskit-missing-bucket/x"),
        ("volume", "list", "--from", "s3://opskit-missing-bucket/x"),
        ("volume", "restore", source, "--from", "s3://opskit-missing-bucket/x"),
    ):
        result = run_opskit(*arguments)
        assert_failed_with_one_line(result, "bucket opskit-missing-bucket does not exist")


def test_s3_wrong_credentials_are_one_line(s3_env, s3_auth_server: AuthS3, tricky_volume) -> None:
    source, _ = tricky_volume
    access_key, _ = s3_auth_server.allowed
    environment = {
        "AWS_ENDPOINT_URL": s3_auth_server.endpoint,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": "wrong-secret",
        "AWS_MAX_ATTEMPTS": "2",
    }
    # The bucket's root: moto's signature check fails on a "/" in a query string.
    target = f"s3://{s3_auth_server.bucket}"
    for arguments in (
        ("volume", "backup", source, "--to", target),
        ("volume", "list", "--from", target),
    ):
        result = run_opskit(*arguments, env=environment)
        assert_failed_with_one_line(
            result, f"rejected the credentials for bucket {s3_auth_server.bucket}"
        )


def test_s3_access_denied_is_one_line(s3_env, s3_auth_server: AuthS3, tricky_volume) -> None:
    source, _ = tricky_volume
    access_key, secret_key = s3_auth_server.denied
    environment = {
        "AWS_ENDPOINT_URL": s3_auth_server.endpoint,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_MAX_ATTEMPTS": "2",
    }
    result = run_opskit(
        "volume", "backup", source, "--to", f"s3://{s3_auth_server.bucket}", env=environment
    )
    assert_failed_with_one_line(result, "access denied", f"s3://{s3_auth_server.bucket}")


def test_s3_unreachable_endpoint_is_one_line_and_quick(s3_env, tricky_volume) -> None:
    source, _ = tricky_volume
    endpoint = f"http://127.0.0.1:{free_port()}"
    for arguments in (
        ("volume", "backup", source, "--to", "s3://some-bucket/x"),
        ("volume", "list", "--from", "s3://some-bucket/x"),
    ):
        started = time.monotonic()
        result = run_opskit(*arguments, env={"AWS_ENDPOINT_URL": endpoint})
        assert time.monotonic() - started < 30
        assert_failed_with_one_line(result, f"cannot reach S3 endpoint {endpoint}", "some-bucket")


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_s3_interrupted_backup_leaves_no_upload_and_no_backup(
    signal_number, s3_env, s3_bucket, s3_client, docker_client, resources, unique_name
) -> None:
    source = resources.volume(f"{unique_name}-interrupted")
    trees.populate_random(docker_client, source, megabytes=200, files=2)
    process = subprocess.Popen(
        opskit_command(
            "volume", "backup", source, "--to", f"s3://{s3_bucket}/x", "--compress", "gzip"
        ),
        cwd=REPOSITORY,
        env=opskit_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _has_parts(s3_client, s3_bucket):  # parts of the archive are on the server
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no multipart upload started"
            time.sleep(0.05)
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    name = signal.Signals(signal_number).name
    assert process.returncode == 128 + signal_number, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"error: interrupted by {name}")
    assert uploads(s3_client, s3_bucket) == []
    assert keys(s3_client, s3_bucket) == []
    assert list_backups(f"s3://{s3_bucket}/x") == []
    assert helpers_using(docker_client, source) == []


def _has_parts(client, bucket: str) -> bool:
    for upload in uploads(client, bucket):
        parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        if parts.get("Parts"):
            return True
    return False


def test_s3_json_output_names_the_s3_location(s3_env, s3_bucket, tricky_volume) -> None:
    source, _ = tricky_volume
    record = backup(source, f"s3://{s3_bucket}/loc/")
    assert record["location"] == f"s3://{s3_bucket}/loc/{record['archive']}"
    assert Path(record["archive"]).name == record["archive"]


def test_s3_backup_with_assembled_parts_restores_exactly(
    s3_env, s3_bucket, s3_client, docker_client, resources, unique_name, monkeypatch
) -> None:
    """The whole backup path (helper tar, zstd, sha256) into parts assembled by server-side
    copy, as past 9.8 GiB with the default plan; here with a plan that assembles 15 MiB parts
    from part 3, run in-process to set it. The restore is the CLI's, compared entry by entry."""
    from opskit.actions import backup as backup_action
    from opskit.actions import context as context_module
    from opskit.config.schema import Config
    from opskit.storage.registry import open_storage
    from opskit.storage.s3.plan import MAX_PARTS, PartPlan

    piece = 5 * MiB
    small_plan = PartPlan(piece, ((2, piece), (MAX_PARTS - 2, 3 * piece)))

    def open_with_small_plan(location, config, host=None):
        storage = open_storage(location, config, host)
        storage.plan = small_plan
        return storage

    source = resources.volume(f"{unique_name}-assembled")
    trees.populate_random(docker_client, source, megabytes=30, files=3)
    expected = trees.snapshot(docker_client, source)
    target_url = f"s3://{s3_bucket}/assembled"
    monkeypatch.setattr(context_module, "open_storage", open_with_small_plan)
    with context_module.RunContext(Config()) as context:
        record = backup_action.run_backup(backup_action.BackupRequest(source, target_url), context)

    archive_key = f"assembled/{record.archive}"
    etag = s3_client.head_object(Bucket=s3_bucket, Key=archive_key)["ETag"]
    assert record.size > 2 * piece + 3 * piece  # at least one full assembled part
    assert int(etag.strip('"').rpartition("-")[2]) == 2 + -(
        -(record.size - 2 * piece) // (3 * piece)
    )
    # No staging object or upload is left; only the archive, its metadata and the index.
    assert sorted(keys(s3_client, s3_bucket)) == sorted(
        [archive_key, f"assembled/{record.id}.json", "assembled/index/records.json"]
    )
    assert uploads(s3_client, s3_bucket) == []

    restored = resources.track_volume(f"{unique_name}-assembled-restored")
    _json(
        run_opskit("volume", "restore", source, "--from", target_url, "--into", restored, "--json")
    )
    trees.assert_same_tree(expected, trees.snapshot(docker_client, restored), "assembled restore")

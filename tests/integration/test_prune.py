"""`opskit volume prune|delete` on a real local store and on S3, with back-dated backups.

One real backup per test is made with the CLI; back-dated copies of it (its archive under new
ids, its metadata with another `created`, tags and verification) make the sets, written as
files (local) or with boto3 (S3), as an older opskit would have left them.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration import trees
from tests.integration.opskit_cli import (
    REPOSITORY,
    assert_failed_with_one_line,
    backup,
    describe,
    files_in,
    list_backups,
    opskit_command,
    opskit_environment,
    restore,
)

pytestmark = pytest.mark.integration


def run_retention(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `opskit ARGS` with the prune and delete commands, as a user would (no terminal)."""
    return subprocess.run(
        opskit_command(*args),
        cwd=REPOSITORY,
        env=opskit_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def prune_json(*args: str) -> dict[str, Any]:
    result = run_retention("volume", "prune", *args, "--json")
    assert result.returncode == 0, describe(result)
    return json.loads(result.stdout)


def decisions(document: dict[str, Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        backup["id"]: (backup["action"], tuple(backup["reasons"])) for backup in document["backups"]
    }


@dataclass
class Dated:
    """A back-dated copy to make: when, with which tags, verified how."""

    label: str
    moment: datetime
    tags: tuple[str, ...] = ()
    verified_ok: bool | None = None


def clone_record(original: dict[str, Any], copy: Dated, source: str | None = None) -> dict:
    """Return the metadata of a copy of backup `original` made at `copy.moment`."""
    source = source or original["source"]
    slug = original["id"].rsplit("-", 2)[0] if source == original["source"] else source
    backup_id = f"{slug}-{copy.moment.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"
    record = dict(original)
    record.update(
        id=backup_id,
        source=source,
        created=copy.moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        archive=backup_id + ".tar.zst",
        tags=list(copy.tags),
        location="",
        verified_ok=copy.verified_ok,
        verified_at=None if copy.verified_ok is None else record["created"],
    )
    return record


def day(days_ago: int, hour: int) -> datetime:
    """A time `days_ago` UTC days before today, at `hour`: always in the past."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days_ago) + timedelta(hours=hour)


# The set: the real backup (today) and copies; with --keep-daily 3 the policy keeps today,
# day -1 (its newest) and day -2, and the guarantees keep the newest verified and pre-upgrade.
SET = [
    Dated("d1-early", day(1, 10)),
    Dated("d1-late", day(1, 14)),
    Dated("d2", day(2, 12)),
    Dated("d3", day(3, 12)),
    Dated("d4-verified", day(4, 12), verified_ok=True),
    Dated("d5-pre-upgrade", day(5, 12), tags=("pre-upgrade",)),
    Dated("d6", day(6, 12), verified_ok=True),
]
EXPECTED_REMOVED = {"d1-early", "d3", "d6"}


def small_volume(resources, docker_client, unique_name: str) -> str:
    name = resources.volume(f"{unique_name}-data")
    trees.populate_files(docker_client, name, {"app/state.txt": "state of the app\n"})
    return name


def clone_local(directory: Path, original: dict, copies: list[Dated], source: str | None = None):
    """Write back-dated copies of `original` into `directory`; return {label: id}."""
    made = {}
    for copy in copies:
        record = clone_record(original, copy, source)
        shutil.copyfile(directory / original["archive"], directory / record["archive"])
        (directory / f"{record['id']}.json").write_text(json.dumps(record))
        made[copy.label] = record["id"]
    return made


def test_prune_local_dry_run_lists_then_prune_removes_the_same(
    resources, docker_client, unique_name, tmp_path
) -> None:
    source = small_volume(resources, docker_client, unique_name)
    store = tmp_path / "store"
    real = backup(source, store)
    original = json.loads((store / f"{real['id']}.json").read_text())
    ids = clone_local(store, original, SET)
    ids["today"] = real["id"]
    slug = real["id"].rsplit("-", 2)[0]
    old_orphan = f"{slug}-{day(5, 1).strftime('%Y%m%dT%H%M%SZ')}-dead.tar.zst"
    fresh_orphan = f"{slug}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-busy.tar.zst"
    for orphan in (old_orphan, fresh_orphan):
        shutil.copyfile(store / real["archive"], store / orphan)
    before = files_in(store)

    dry = prune_json("--from", str(store), "--keep-daily", "3", "--dry-run")

    assert files_in(store) == before, "a dry run changed the store"
    label_of = {backup_id: label for label, backup_id in ids.items()}
    removed = {label_of[b["id"]] for b in dry["backups"] if b["action"] == "remove"}
    assert removed == EXPECTED_REMOVED
    reasons = {label_of[b["id"]]: b["reasons"] for b in dry["backups"]}
    assert reasons["d4-verified"] == ["newest verified"]
    assert reasons["d5-pre-upgrade"] == ["protected tag pre-upgrade"]
    assert reasons["today"][-1] == "newest"
    assert [orphan["name"] for orphan in dry["orphans"]] == [old_orphan]
    assert not any(b["removed"] for b in dry["backups"])

    real_run = prune_json("--from", str(store), "--keep-daily", "3")

    assert decisions(real_run) == decisions(dry)
    remaining = {record["id"] for record in list_backups(store)}
    assert remaining == {ids[label] for label in ids if label not in EXPECTED_REMOVED}
    for label in EXPECTED_REMOVED:
        assert not list(store.glob(f"{ids[label]}.*")), f"{label} left files"
    assert not (store / old_orphan).exists()
    assert (store / fresh_orphan).exists(), "a running backup's archive was taken for an orphan"
    # A kept copy restores: prune left its archive whole.
    check = resources.track_volume(f"{unique_name}-check")
    restore(source, store, "--backup", ids["d5-pre-upgrade"], "--into", check)
    assert trees.snapshot(docker_client, check) == trees.snapshot(docker_client, source)


def test_prune_holds_a_source_with_damaged_metadata_and_prunes_the_others(
    resources, docker_client, unique_name, tmp_path
) -> None:
    source = small_volume(resources, docker_client, unique_name)
    store = tmp_path / "store"
    real = backup(source, store)
    original = json.loads((store / f"{real['id']}.json").read_text())
    mine = clone_local(store, original, SET[:3])
    others = clone_local(store, original, SET[:3], source="other-volume")
    slug = real["id"].rsplit("-", 2)[0]
    damaged = f"{slug}-{day(0, 0).strftime('%Y%m%dT%H%M%SZ')}-bad0"
    (store / f"{damaged}.json").write_text('{"id": "broken')

    result = run_retention("volume", "prune", "--from", str(store), "--keep-last", "1", "--json")

    assert_failed_with_one_line(result, "removed nothing", source, "damaged", f"{damaged}.json")
    document = json.loads(result.stdout)
    assert [held["source"] for held in document["held"]] == [source]
    assert all((store / f"{backup_id}.json").exists() for backup_id in mine.values())
    # Of the other source only its newest copy (day -1, 14:00) is left.
    assert [(store / f"{backup_id}.json").exists() for backup_id in others.values()] == [
        False,
        True,
        False,
    ]

    deleted = run_retention("volume", "delete", damaged, "--from", str(store), "--yes", "--json")
    assert deleted.returncode == 0, describe(deleted)
    assert json.loads(deleted.stdout)["objects"] == [f"{damaged}.json"]
    again = prune_json("--from", str(store), "--keep-last", "1")
    assert {b["id"] for b in again["backups"] if b["removed"]} == set(mine.values())


def test_delete_removes_one_backup_and_guards_the_newest(
    resources, docker_client, unique_name, tmp_path
) -> None:
    source = small_volume(resources, docker_client, unique_name)
    store = tmp_path / "store"
    real = backup(source, store)
    original = json.loads((store / f"{real['id']}.json").read_text())
    ids = clone_local(store, original, SET[:2])
    older = ids["d1-early"]

    unconfirmed = run_retention("volume", "delete", older, "--from", str(store))
    assert_failed_with_one_line(unconfirmed, "confirmation", "--yes", exit_code=2)
    newest = run_retention("volume", "delete", real["id"], "--from", str(store), "--yes")
    assert_failed_with_one_line(newest, "newest", "--force", exit_code=2)
    missing = run_retention("volume", "delete", f"{older}x", "--from", str(store), "--yes")
    assert_failed_with_one_line(missing, "no backup", exit_code=1)
    assert len(list_backups(store)) == 3

    deleted = run_retention("volume", "delete", older, "--from", str(store), "--yes")
    assert deleted.returncode == 0, describe(deleted)
    assert f"removed  {older}.json" in deleted.stdout
    assert not list(store.glob(f"{older}.*"))
    forced = run_retention("volume", "delete", real["id"], "--from", str(store), "-y", "--force")
    assert forced.returncode == 0, describe(forced)
    assert [record["id"] for record in list_backups(store)] == [ids["d1-late"]]


def s3_keys(client, bucket: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {entry["Key"] for page in pages for entry in page.get("Contents", [])}


def test_prune_and_delete_on_s3(
    s3_env, s3_bucket, s3_client, resources, docker_client, unique_name
) -> None:
    source = small_volume(resources, docker_client, unique_name)
    prefix = "docker/backups"
    target = f"s3://{s3_bucket}/{prefix}"
    real = backup(source, target)
    metadata = s3_client.get_object(Bucket=s3_bucket, Key=f"{prefix}/{real['id']}.json")
    original = json.loads(metadata["Body"].read())
    ids = {"today": real["id"]}
    for copy in SET:
        record = clone_record(original, copy)
        s3_client.copy_object(
            Bucket=s3_bucket,
            Key=f"{prefix}/{record['archive']}",
            CopySource={"Bucket": s3_bucket, "Key": f"{prefix}/{real['archive']}"},
        )
        s3_client.put_object(
            Bucket=s3_bucket, Key=f"{prefix}/{record['id']}.json", Body=json.dumps(record)
        )
        ids[copy.label] = record["id"]
    before = s3_keys(s3_client, s3_bucket)

    dry = prune_json("--from", target, "--volume", source, "--keep-daily", "3", "--dry-run")
    assert s3_keys(s3_client, s3_bucket) == before
    real_run = prune_json("--from", target, "--volume", source, "--keep-daily", "3")

    assert decisions(real_run) == decisions(dry)
    gone = {ids[label] for label in EXPECTED_REMOVED}
    assert {b["id"] for b in real_run["backups"] if b["removed"]} == gone
    expected = {key for key in before if not any(key.startswith(f"{prefix}/{i}.") for i in gone)}
    assert s3_keys(s3_client, s3_bucket) == expected

    deleted = run_retention("volume", "delete", ids["d2"], "--from", target, "--yes")
    assert deleted.returncode == 0, describe(deleted)
    assert not any(
        key.startswith(f"{prefix}/{ids['d2']}.") for key in s3_keys(s3_client, s3_bucket)
    )
    assert {record["id"] for record in list_backups(target)} == {
        ids[label] for label in ("today", "d1-late", "d4-verified", "d5-pre-upgrade")
    }

"""Restore safety and containers in use: refusal, --force with its pre-restore backup,
--stop-containers around backup and restore, and --into a missing volume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration import trees
from tests.integration.opskit_cli import (
    STOPPABLE_COMMAND,
    assert_failed_with_one_line,
    backup,
    describe,
    docker_time,
    helpers_using,
    list_backups,
    restore,
    run_opskit,
    started_at,
)

pytestmark = pytest.mark.integration

SOURCE_FILES = {"app/config.yml": "port: 8080\n", "app/data.db": "rows\n" * 100, "README": "v2\n"}
# Old contents of the target: names the swap must not miss (dot files, a `..` prefix, a dash).
OLD_FILES = {
    "old-only.txt": "must not linger\n",
    ".hidden": "hidden\n",
    "..double-dot": "dots\n",
    "-dash": "dash\n",
    "app/config.yml": "port: 1\n",
    "old-dir/nested/file": "nested\n",
}


@pytest.fixture
def backed_up_source(docker_client, resources, unique_name, tmp_path):
    """A volume with SOURCE_FILES, backed up once into tmp_path/backups."""
    source = resources.volume(f"{unique_name}-src")
    trees.populate_files(docker_client, source, SOURCE_FILES)
    store = tmp_path / "backups"
    record = backup(source, store)
    return source, store, record, trees.snapshot(docker_client, source)


@pytest.fixture
def old_target(docker_client, resources, unique_name):
    """A non-empty volume with OLD_FILES and its own root mode; returns (name, snapshot)."""
    target = resources.volume(f"{unique_name}-target")
    trees.populate_files(docker_client, target, OLD_FILES)
    trees.run_in_tree(docker_client, target, "chown 70:70 . && chmod 0711 .")
    return target, trees.snapshot(docker_client, target)


def _user_of(resources, volume: str):
    """A running container that mounts `volume` and stops at once on SIGTERM."""
    return resources.container(command=STOPPABLE_COMMAND, volumes={volume: {"bind": "/data"}})


def test_restore_refuses_a_non_empty_target_without_force(
    docker_client, backed_up_source, old_target
):
    source, store, _, _ = backed_up_source
    target, old_tree = old_target

    result = run_opskit("volume", "restore", source, "--from", str(store), "--into", target)

    assert_failed_with_one_line(result, "not empty", target, "--force")
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "refused target")
    assert [item["source"] for item in list_backups(store)] == [source], "nothing new is stored"
    assert helpers_using(docker_client, target) == []


def test_restore_refuses_a_non_empty_host_directory_without_force(
    docker_client, backed_up_source, tmp_path
):
    source, store, _, _ = backed_up_source
    target = tmp_path / "existing"
    target.mkdir()
    (target / "keep.txt").write_text("keep\n")

    result = run_opskit("volume", "restore", source, "--from", str(store), "--into", str(target))

    assert_failed_with_one_line(result, "not empty", str(target))
    assert sorted(path.name for path in target.iterdir()) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "keep\n"


def test_restore_force_saves_a_pre_restore_backup_then_replaces_the_contents(
    docker_client, resources, unique_name, backed_up_source, old_target
):
    source, store, record, source_tree = backed_up_source
    target, old_tree = old_target

    result = restore(source, store, "--into", target, "--force")

    safety = result["safety_backup"]
    assert safety is not None, result
    assert safety["tags"] == ["pre-restore"]
    assert safety["source"] == target and safety["kind"] == "volume"
    assert result["replaced_contents"] is True
    assert result["backup"]["id"] == record["id"]
    # The contents are replaced: nothing of the old tree lingers, the root is the source's.
    trees.assert_same_tree(source_tree, trees.snapshot(docker_client, target), "forced restore")
    # The safety backup is listed with its tag, and holds exactly the old contents.
    [listed] = list_backups(store, "--volume", target)
    assert listed["id"] == safety["id"] and listed["tags"] == ["pre-restore"]
    check = resources.track_volume(f"{unique_name}-pre-restore-check")
    restore(target, store, "--backup", safety["id"], "--into", check)
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, check), "pre-restore backup")


def test_restore_force_prints_the_pre_restore_backup_id(
    docker_client, backed_up_source, old_target
):
    source, store, _, source_tree = backed_up_source
    target, _ = old_target

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force"
    )

    assert result.returncode == 0, describe(result)
    [safety] = list_backups(store, "--volume", target)
    assert safety["tags"] == ["pre-restore"]
    assert safety["id"] in result.stdout, describe(result)
    trees.assert_same_tree(source_tree, trees.snapshot(docker_client, target), "forced restore")


def test_restore_force_into_the_source_itself_in_place(docker_client, backed_up_source):
    source, store, record, source_tree = backed_up_source
    trees.run_in_tree(docker_client, source, "rm README && echo changed > app/config.yml")

    result = restore(source, store, "--force", "--backup", record["id"])

    assert result["target"] == source and result["safety_backup"] is not None
    trees.assert_same_tree(source_tree, trees.snapshot(docker_client, source), "in place")


def test_restore_refuses_a_target_used_by_a_running_container(
    docker_client, resources, backed_up_source, old_target
):
    source, store, _, _ = backed_up_source
    target, old_tree = old_target
    user = _user_of(resources, target)
    _, started_before = started_at(docker_client, user.id)

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force"
    )

    assert_failed_with_one_line(result, user.name, "--stop-containers")
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "refused target")
    assert started_at(docker_client, user.id) == (True, started_before), "container was touched"
    assert [item["source"] for item in list_backups(store)] == [source], "nothing new is stored"


def test_restore_stop_containers_stops_restores_and_starts_them_again(
    docker_client, resources, backed_up_source, old_target
):
    source, store, _, source_tree = backed_up_source
    target, _ = old_target
    user = _user_of(resources, target)
    _, started_before = started_at(docker_client, user.id)

    result = restore(source, store, "--into", target, "--force", "--stop-containers")

    assert result["restarted_containers"] == [user.name]
    running, started_after = started_at(docker_client, user.id)
    assert running, "the container was not started again"
    assert started_after != started_before, "the container was not stopped and started"
    finished = docker_client.containers.get(user.id).attrs["State"]["FinishedAt"]
    assert docker_time(started_before) < docker_time(finished) < docker_time(started_after), (
        "it was not stopped during the restore"
    )
    trees.assert_same_tree(source_tree, trees.snapshot(docker_client, target), "restore")


def test_restore_stop_containers_starts_them_again_when_the_restore_fails(
    docker_client, resources, backed_up_source, old_target
):
    source, store, record, _ = backed_up_source
    target, old_tree = old_target
    user = _user_of(resources, target)
    _, started_before = started_at(docker_client, user.id)
    metadata_path = store / f"{record['id']}.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["sha256"] = "0" * 64
    metadata_path.write_text(json.dumps(metadata))

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target,
        "--force", "--stop-containers",
    )  # fmt: skip

    assert result.returncode == 1, describe(result)
    assert "Traceback" not in result.stderr
    running, started_after = started_at(docker_client, user.id)
    assert running and started_after != started_before
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "failed restore")


def test_backup_stop_containers_stops_and_starts_them_and_records_them(
    docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-busy")
    trees.populate_files(docker_client, volume, {"data": "data\n"})
    user = _user_of(resources, volume)
    bystander = resources.container(command=STOPPABLE_COMMAND)  # uses no volume: left alone
    _, started_before = started_at(docker_client, user.id)
    _, bystander_started = started_at(docker_client, bystander.id)
    store = tmp_path / "backups"

    record = backup(volume, store, "--stop-containers")

    assert record["stopped_containers"] == [user.name]
    metadata = json.loads((store / f"{record['id']}.json").read_text())
    assert metadata["stopped_containers"] == [user.name]
    running, started_after = started_at(docker_client, user.id)
    assert running, "the container was not started again"
    assert started_after != started_before, "the container was not stopped during the backup"
    assert started_at(docker_client, bystander.id) == (True, bystander_started)


def test_backup_of_a_volume_in_use_warns_on_one_line(
    docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-busy")
    trees.populate_files(docker_client, volume, {"data": "data\n"})
    user = _user_of(resources, volume)
    _, started_before = started_at(docker_client, user.id)
    store = tmp_path / "backups"

    result = run_opskit("volume", "backup", volume, "--to", str(store), "--json")

    assert result.returncode == 0, describe(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith("warning:") and user.name in lines[0], lines[0]
    assert "consistent" in lines[0]
    assert json.loads(result.stdout)["stopped_containers"] == []
    assert started_at(docker_client, user.id) == (True, started_before), "container was touched"


def test_backup_of_a_host_directory_in_use_warns_on_one_line(docker_client, resources, tmp_path):
    source = tmp_path / "srv"
    (source / "uploads").mkdir(parents=True)
    (source / "uploads" / "a.txt").write_text("a\n")
    # The container mounts a directory below the source: the copy may still be inconsistent.
    user = resources.container(
        command=STOPPABLE_COMMAND, volumes={str(source / "uploads"): {"bind": "/uploads"}}
    )

    result = run_opskit("volume", "backup", str(source), "--to", str(tmp_path / "b"), "--json")

    assert result.returncode == 0, describe(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning:"), describe(result)
    assert user.name in lines[0]


def test_backup_of_an_unused_volume_prints_nothing_on_stderr(
    docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-idle")
    trees.populate_files(docker_client, volume, {"data": "data\n"})
    resources.container(volumes={volume: {"bind": "/data"}}).stop(timeout=0)  # stopped: no user

    result = run_opskit("volume", "backup", volume, "--to", str(tmp_path / "b"), "--json")

    assert result.returncode == 0, describe(result)
    assert result.stderr.strip() == ""


def test_restore_into_a_missing_volume_creates_it(
    docker_client, resources, unique_name, backed_up_source
):
    source, store, _, source_tree = backed_up_source
    target = resources.track_volume(f"{unique_name}-new")

    result = restore(source, store, "--into", target)

    assert result["created_target"] is True
    assert result["safety_backup"] is None and result["replaced_contents"] is False
    assert docker_client.volumes.get(target).attrs["Driver"] == "local"
    trees.assert_same_tree(source_tree, trees.snapshot(docker_client, target), "new volume")


def test_restore_into_an_existing_empty_volume_needs_no_force(
    docker_client, resources, unique_name, backed_up_source
):
    source, store, _, source_tree = backed_up_source
    target = resources.volume(f"{unique_name}-empty")

    result = restore(source, store, "--into", target)

    assert result["created_target"] is False and result["safety_backup"] is None
    trees.assert_same_tree(source_tree, trees.snapshot(docker_client, target), "empty volume")


def test_restore_into_a_missing_host_directory_creates_it(
    docker_client, backed_up_source, tmp_path: Path
):
    source, store, _, source_tree = backed_up_source
    target = tmp_path / "a" / "b"

    result = restore(source, store, "--into", str(target))

    assert result["created_target"] is True and result["target_kind"] == "path"
    trees.assert_same_tree(source_tree, trees.snapshot(docker_client, str(target)), "new path")

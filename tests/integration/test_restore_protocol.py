"""The restore protocol on the real engine: the target's lock, the journal, recovery after a
killed run, and messages that say what is true (issue 8, points 1 to 6)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import docker
import pytest
import zstandard

from opskit.engine.lock import LOCK_LABEL, lock_name
from opskit.engine.orphans import OWNER_LABEL
from opskit.engine.volumes import DataSource
from opskit.process_owner import owner_label
from tests.integration import trees
from tests.integration.opskit_cli import (
    STOPPABLE_COMMAND,
    assert_failed_with_one_line,
    backup,
    bytes_below,
    describe,
    finish,
    helpers_using,
    list_backups,
    remove_helpers_using,
    restore,
    run_json,
    run_opskit,
    start_opskit,
    volume_mountpoint,
)

pytestmark = pytest.mark.integration

JOURNAL = ".opskit-journal"
NEW_FILES = {"app/config.yml": "port: 8080\n", "app/data.db": "rows\n" * 100, "README": "v2\n"}
OLD_FILES = {"old-only.txt": "old\n", ".hidden": "hidden\n", "app/config.yml": "port: 1\n"}


@pytest.fixture
def backed_up(docker_client, resources, unique_name, tmp_path):
    """A volume with NEW_FILES, backed up once; returns (source, store, record, snapshot)."""
    source = resources.volume(f"{unique_name}-src")
    trees.populate_files(docker_client, source, NEW_FILES)
    store = tmp_path / "backups"
    record = backup(source, store)
    return source, store, record, trees.snapshot(docker_client, source)


@pytest.fixture
def old_target(docker_client, resources, unique_name):
    target = resources.volume(f"{unique_name}-target")
    trees.populate_files(docker_client, target, OLD_FILES)
    return target


@pytest.fixture
def lock_container(docker_client):
    """Create lock containers as another run would; remove them afterwards."""
    created: list[str] = []

    def create(target: str, owner: str) -> str:
        container = docker_client.api.create_container(
            "busybox:stable",
            command=["true"],
            name=lock_name(DataSource.parse(target)),
            labels={LOCK_LABEL: f"volume {target}", OWNER_LABEL: owner},
        )
        created.append(container["Id"])
        return container["Id"]

    yield create
    for container_id in created:
        try:
            docker_client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass


def opskit_entries(client, volume: str) -> list[str]:
    """Top-level entries of `volume` whose names opskit uses for its own."""
    output = trees.run_in_tree(client, volume, "ls -a", read_only=True).decode()
    return sorted(name for name in output.split() if name.startswith(".opskit"))


def journal_of(client, volume: str) -> dict:
    mountpoint = volume_mountpoint(client, volume)
    return json.loads((mountpoint / JOURNAL).read_text())


def archive_names(store: Path, record: dict) -> list[str]:
    with open(store / record["archive"], "rb") as stored:
        data = zstandard.ZstdDecompressor().stream_reader(stored).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getnames()


def test_a_plain_restore_keeps_user_entries_named_like_opskit_leftovers(
    docker_client, backed_up, resources, unique_name
):
    """Point 1: `.opskit-old-*` without a journal is user data; the restore refuses, as for
    any non-empty target, and deletes nothing."""
    source, store, _, _ = backed_up
    target = resources.volume(f"{unique_name}-v")
    trees.run_in_tree(
        docker_client,
        target,
        "echo precious >db.dat; mkdir .opskit-old-0badf00d; mkdir .opskit-restore-1234;"
        " echo mine > .opskit-restore-1234/x",
    )
    before = trees.snapshot(docker_client, target)

    result = run_opskit("volume", "restore", source, "--from", str(store), "--into", target)

    assert_failed_with_one_line(result, "not empty", "--force")
    trees.assert_same_tree(before, trees.snapshot(docker_client, target), "target")


def test_a_forced_restore_saves_user_entries_named_like_opskit_leftovers(
    docker_client, backed_up, resources, unique_name
):
    source, store, _, new_tree = backed_up
    target = resources.volume(f"{unique_name}-v")
    trees.run_in_tree(
        docker_client,
        target,
        "echo precious >db.dat; mkdir .opskit-old-0badf00d; mkdir .opskit-restore-1234;"
        " echo mine > .opskit-restore-1234/x",
    )
    before = trees.snapshot(docker_client, target)

    result = restore(source, store, "--into", target, "--force")

    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, target), "restored target")
    copy = resources.track_volume(f"{unique_name}-copy")
    restore(target, store, "--backup", result["safety_backup"]["id"], "--into", copy)
    trees.assert_same_tree(before, trees.snapshot(docker_client, copy), "pre-restore backup")


def test_a_held_lock_makes_restore_and_backup_fail_clearly(
    docker_client, backed_up, old_target, lock_container, tmp_path
):
    """Point 3: runs on one target are serialized; a second one fails at once, naming the
    holder, and changes nothing."""
    source, store, _, _ = backed_up
    before = trees.snapshot(docker_client, old_target)
    lock_container(old_target, owner_label())  # a live owner: this test process

    restored = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", old_target, "--force"
    )
    backed = run_opskit("volume", "backup", old_target, "--to", str(tmp_path / "other"))

    assert_failed_with_one_line(restored, "locked", f"pid {os.getpid()}", "--wait")
    assert_failed_with_one_line(backed, "locked", "--wait")
    trees.assert_same_tree(before, trees.snapshot(docker_client, old_target), "locked target")
    assert [item["source"] for item in list_backups(store)] == [source]
    assert helpers_using(docker_client, old_target) == []


def test_a_restore_with_wait_runs_once_the_lock_is_released(
    docker_client, backed_up, old_target, lock_container
):
    source, store, _, new_tree = backed_up
    holder = lock_container(old_target, owner_label())
    releaser = threading.Timer(2.0, docker_client.api.remove_container, [holder])
    releaser.start()
    try:
        process = start_opskit(
            "volume", "restore", source, "--from", str(store), "--into", old_target,
            "--force", "--wait", "60", "--json",
        )  # fmt: skip
        result = finish(process)
    finally:
        releaser.join()

    assert result.returncode == 0, describe(result)
    assert "waiting for another opskit" in result.stderr
    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, old_target), "target")


def test_a_stale_lock_of_a_killed_run_is_taken_over(
    docker_client, backed_up, old_target, lock_container
):
    source, store, _, new_tree = backed_up
    dead_owner = owner_label().rsplit(":", 2)[0] + ":999999:1"
    stale = lock_container(old_target, dead_owner)

    restore(source, store, "--into", old_target, "--force")

    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, old_target), "target")
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_container(stale)


@pytest.fixture
def big_source(docker_client, resources, unique_name, tmp_path):
    """About 100 MB of random data, backed up uncompressed (restores take a few seconds)."""
    source = resources.volume(f"{unique_name}-big")
    trees.populate_random(docker_client, source, megabytes=96, files=4)
    store = tmp_path / "backups"
    backup(source, store, "--compress", "none")
    return source, store, trees.snapshot(docker_client, source)


def test_two_forced_restores_into_one_volume_never_interleave(
    docker_client, big_source, old_target
):
    """Point 3: two `--force` restores at once: one runs, the other fails clearly; the target
    holds exactly the restored tree and nothing of opskit's."""
    source, store, new_tree = big_source
    command = ("volume", "restore", source, "--from", str(store), "--into", old_target, "--force")
    first, second = start_opskit(*command), start_opskit(*command)
    results = [finish(first), finish(second)]

    codes = sorted(result.returncode for result in results)
    assert codes == [0, 1], "\n".join(describe(result) for result in results)
    [refused] = [result for result in results if result.returncode == 1]
    assert_failed_with_one_line(refused, "locked")
    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, old_target), "target")
    assert opskit_entries(docker_client, old_target) == []
    assert helpers_using(docker_client, old_target) == []


def test_two_forced_restores_with_wait_run_one_after_the_other(
    docker_client, big_source, old_target
):
    source, store, new_tree = big_source
    command = (
        "volume", "restore", source, "--from", str(store), "--into", old_target, "--force",
        "--wait", "120",
    )  # fmt: skip
    first, second = start_opskit(*command), start_opskit(*command)
    results = [finish(first), finish(second)]

    assert [result.returncode for result in results] == [0, 0], "\n".join(map(describe, results))
    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, old_target), "target")
    assert opskit_entries(docker_client, old_target) == []


def test_a_killed_restore_is_rolled_back_by_the_next_backup(
    docker_client, big_source, old_target, tmp_path
):
    """Point 5: after SIGKILL mid-unpack the staging directory stays in the target; the next
    backup removes it first (as the journal says) and never archives it."""
    source, store, _ = big_source
    before = trees.snapshot(docker_client, old_target)
    mountpoint = volume_mountpoint(docker_client, old_target)
    process = start_opskit(
        "volume", "restore", source, "--from", str(store), "--into", old_target, "--force"
    )
    deadline = time.monotonic() + 120
    while bytes_below(mountpoint, ".opskit-restore-*") < 16 << 20:
        assert process.poll() is None and time.monotonic() < deadline, "restore ended too soon"
        time.sleep(0.005)
    process.kill()
    process.wait()
    try:
        assert journal_of(docker_client, old_target)["phase"] == "unpacking"

        later = tmp_path / "later"
        result = run_opskit("volume", "backup", old_target, "--to", str(later), "--json")

        assert result.returncode == 0, describe(result)
        assert "removed the staging directory of an interrupted restore" in result.stderr
        record = json.loads(result.stdout)
        assert not [name for name in archive_names(later, record) if ".opskit" in name]
        trees.assert_same_tree(before, trees.snapshot(docker_client, old_target), "target")
        assert opskit_entries(docker_client, old_target) == []
        assert helpers_using(docker_client, old_target) == []
    finally:
        remove_helpers_using(docker_client, [old_target], [])


def test_a_swap_that_fails_midway_says_so_and_recover_finishes_it(
    docker_client, backed_up, old_target
):
    """Point 4: once the verified swap began, a failure does not claim "unchanged"; it says
    how to finish, and `volume recover` does."""
    source, store, _, new_tree = backed_up
    stuck = volume_mountpoint(docker_client, old_target) / "old-only.txt"
    subprocess.run(["chattr", "+i", str(stuck)], check=True)  # rename(2) now fails: EPERM
    try:
        result = run_opskit(
            "volume", "restore", source, "--from", str(store), "--into", old_target, "--force"
        )
        line = assert_failed_with_one_line(
            result, "swap", "verified", "opskit volume recover", notices=("saved the current",)
        )
        assert "unchanged" not in line
        assert journal_of(docker_client, old_target)["phase"] == "swap-out"
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)

    recovered = run_json("volume", "recover", old_target)

    assert "finished an interrupted restore" in recovered["done"]
    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, old_target), "target")
    assert opskit_entries(docker_client, old_target) == []


def test_a_failed_deletion_of_the_old_contents_is_a_success_finished_later(
    docker_client, backed_up, old_target
):
    """The restore is complete once the swap is; old entries that cannot be deleted yet stay
    hidden, named by the journal, and the next run deletes them."""
    source, store, _, new_tree = backed_up
    trees.run_in_tree(docker_client, old_target, "mkdir -p keep && echo x > keep/stuck")
    mountpoint = volume_mountpoint(docker_client, old_target)
    subprocess.run(["chattr", "+i", str(mountpoint / "keep" / "stuck")], check=True)
    try:
        process = start_opskit(
            "volume", "restore", source, "--from", str(store), "--into", old_target, "--force"
        )
        result = finish(process)
        assert result.returncode == 0, describe(result)
        assert "the next opskit run on it deletes them" in result.stderr
        assert journal_of(docker_client, old_target)["phase"] == "delete-old"
    finally:  # unlink(2) of it failed; it moved with the old entries
        for stuck in mountpoint.rglob("stuck"):
            subprocess.run(["chattr", "-i", str(stuck)], check=True)

    later = run_opskit("volume", "backup", old_target, "--to", str(store))

    assert later.returncode == 0, describe(later)
    assert "removed the replaced contents" in later.stderr
    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, old_target), "target")
    assert opskit_entries(docker_client, old_target) == []


# The state a run killed in each phase leaves (old entries: OLD_FILES; new: NEW_FILES).
KILLED_IN_PHASE = {
    "unpacking": "mkdir -p .opskit-restore-{id}/app; echo half > .opskit-restore-{id}/app/x",
    "swap-out": ("mkdir -p .opskit-old-{id} && mv old-only.txt .opskit-old-{id}/ && {stage}"),
    "swap-in": "mkdir -p .opskit-old-{id} && mv old-only.txt .hidden app .opskit-old-{id}/ "
    "&& {stage} && mv .opskit-restore-{id}/README .",
    "delete-old": "mkdir -p .opskit-old-{id} && mv old-only.txt .hidden app .opskit-old-{id}/ "
    "&& {stage} && mv .opskit-restore-{id}/* . && rmdir .opskit-restore-{id}",
}


@pytest.mark.parametrize("phase", list(KILLED_IN_PHASE))
def test_recover_finishes_or_rolls_back_a_run_killed_in_each_phase(
    phase, docker_client, backed_up, old_target
):
    source, _, record, new_tree = backed_up
    old_tree = trees.snapshot(docker_client, old_target)
    restore_id = "0123456789abcdef"
    # The staged copy: the source's files, copied in through a second mount.
    stage = f"cp -a /src/. .opskit-restore-{restore_id}/"
    script = KILLED_IN_PHASE[phase].format(id=restore_id, stage=stage)
    journal = {"restore_id": restore_id, "backup_id": record["id"], "phase": phase, "format": 1}
    docker_client.containers.run(
        "busybox:stable",
        ["sh", "-c", f"set -e; cd /data; mkdir -p .opskit-restore-{restore_id}; {script};"
         f" printf '%s' '{json.dumps(journal)}' > {JOURNAL}"],
        volumes={old_target: {"bind": "/data"}, source: {"bind": "/src", "mode": "ro"}},
        remove=True,
    )  # fmt: skip

    recovered = run_json("volume", "recover", old_target)

    expected = old_tree if phase == "unpacking" else new_tree
    trees.assert_same_tree(expected, trees.snapshot(docker_client, old_target), "target")
    assert opskit_entries(docker_client, old_target) == []
    assert record["id"] in recovered["done"]


def test_an_invalid_journal_is_left_alone(docker_client, backed_up, old_target):
    source, store, _, _ = backed_up
    trees.run_in_tree(docker_client, old_target, f'echo \'{{"phase": "../.."}}\' > {JOURNAL}')
    before = trees.snapshot(docker_client, old_target)

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", old_target, "--force"
    )

    assert_failed_with_one_line(result, "not a valid opskit restore journal")
    trees.assert_same_tree(before, trees.snapshot(docker_client, old_target), "target")
    assert helpers_using(docker_client, old_target) == []


def test_recover_of_a_consistent_target_does_nothing(docker_client, old_target):
    before = trees.snapshot(docker_client, old_target)

    result = run_opskit("volume", "recover", old_target)

    assert result.returncode == 0, describe(result)
    assert "nothing to recover" in result.stdout
    trees.assert_same_tree(before, trees.snapshot(docker_client, old_target), "target")


def test_backup_refuses_a_store_inside_the_volume(docker_client, old_target):
    """Point 6: a store inside the volume's own directory is refused (the mountpoint is now
    known), so a later forced restore cannot wipe the backups."""
    inside = volume_mountpoint(docker_client, old_target) / "bk"

    result = run_opskit("volume", "backup", old_target, "--to", str(inside))

    assert_failed_with_one_line(result, "overlap", exit_code=2)
    assert not inside.exists()


def test_a_signal_after_the_swap_reports_the_complete_restore(docker_client, backed_up, old_target):
    """Point 4: Ctrl-C once the swap is done does not undo it and is not reported as an
    interruption: exit 0, the restored tree, and a notice; the next run deletes the rest."""
    source, store, _, new_tree = backed_up
    # Many old entries: deleting them takes long enough to be interrupted.
    trees.run_in_tree(
        docker_client, old_target, "mkdir many && cd many && seq 1 40000 | xargs touch"
    )
    journal_path = volume_mountpoint(docker_client, old_target) / JOURNAL
    process = start_opskit(
        "volume", "restore", source, "--from", str(store), "--into", old_target, "--force"
    )
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None and time.monotonic() < deadline, describe(finish(process))
        try:
            if json.loads(journal_path.read_text())["phase"] == "delete-old":
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    result = finish(process)

    assert result.returncode == 0, describe(result)
    assert "arrived after the restore was complete" in result.stderr
    assert "restored" in result.stdout
    assert helpers_using(docker_client, old_target) == []
    run_json("volume", "recover", old_target)
    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, old_target), "target")
    assert opskit_entries(docker_client, old_target) == []


def test_a_committed_swap_is_never_finished_under_a_running_app(
    docker_client, backed_up, old_target, resources, tmp_path
):
    """The review's worst case: an app running on a half-swapped target (restarted by the
    engine) must not have its entries moved by the next backup; it is refused with the way
    out, and `recover --stop-containers` finishes it."""
    source, _, record, new_tree = backed_up
    restore_id = "fedcba9876543210"
    journal = {"restore_id": restore_id, "backup_id": record["id"], "phase": "swap-out"}
    journal["format"] = 1
    docker_client.containers.run(
        "busybox:stable",
        ["sh", "-c", f"set -e; cd /data; mkdir .opskit-restore-{restore_id};"
         f" cp -a /src/. .opskit-restore-{restore_id}/;"
         f" printf '%s' '{json.dumps(journal)}' > {JOURNAL}"],
        volumes={old_target: {"bind": "/data"}, source: {"bind": "/src", "mode": "ro"}},
        remove=True,
    )  # fmt: skip
    app = resources.container(command=STOPPABLE_COMMAND, volumes={old_target: {"bind": "/data"}})
    before = trees.snapshot(docker_client, old_target)

    backed = run_opskit("volume", "backup", old_target, "--to", str(tmp_path / "b"))
    recovered = run_opskit("volume", "recover", old_target)

    for result in (backed, recovered):
        assert_failed_with_one_line(
            result, "running containers", "--stop-containers", notices=("warning:",)
        )
    trees.assert_same_tree(before, trees.snapshot(docker_client, old_target), "target")
    finished = run_json("volume", "recover", old_target, "--stop-containers")
    assert "finished an interrupted restore" in finished["done"]
    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, old_target), "target")
    app.reload()
    assert app.status == "running", "the app was not started again"

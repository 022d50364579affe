"""Full disks on both sides: a restore into a nearly full filesystem, and a forced restore whose
safety backup does not fit in the store. Each fails with one line naming the lack of space;
the target keeps its contents and the store lists only whole backups."""

from __future__ import annotations

import subprocess

import pytest

from tests.faults.harness import engine_leftovers, last_error_line, opskit_entries, store_leftovers
from tests.integration import trees
from tests.integration.daemon_fixtures import assert_store_is_whole
from tests.integration.opskit_cli import describe, list_backups, run_opskit

pytestmark = pytest.mark.integration


def test_a_restore_into_a_nearly_full_filesystem_leaves_the_target_as_it_was(
    docker_client, resources, unique_name, source, stored
):
    store, record, _ = stored
    # A 16 MiB filesystem that already holds 6 MiB: the 24 MiB backup cannot fit.
    target = resources.volume(
        f"{unique_name}-small",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=16m"},
    )
    trees.run_in_tree(docker_client, target, "head -c 6291456 /dev/urandom > old.bin")
    old_tree = trees.snapshot(docker_client, target)

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force",
        "--backup", record["id"],
    )  # fmt: skip

    line = last_error_line(result)
    assert "space" in line.lower() and "unchanged" in line, line
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "target")
    assert opskit_entries(docker_client, target) == []
    assert engine_leftovers(docker_client, target) == []
    assert_store_is_whole(store)


def test_a_safety_backup_that_does_not_fit_stops_the_restore_before_anything_changes(
    docker_client, resources, unique_name, source, stored, tmp_path
):
    _, record, _ = stored
    # The store: a 4 MiB filesystem holding a copy of the backup's small pieces only.
    small_store = tmp_path / "small-store"
    small_store.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(small_store)],
                   check=True)  # fmt: skip
    try:
        result = run_opskit("volume", "backup", source, "--to", str(small_store))
        assert result.returncode == 0, describe(result)
        subprocess.run(["mount", "-o", "remount,size=" + str(
            sum(p.stat().st_size for p in small_store.iterdir() if p.is_file()) // 1024 + 256
        ) + "k", str(small_store)], check=True)  # fmt: skip
        target = resources.volume(f"{unique_name}-full")
        trees.populate_random(docker_client, target, megabytes=8)
        old_tree = trees.snapshot(docker_client, target)

        result = run_opskit(
            "volume", "restore", source, "--from", str(small_store), "--into", target, "--force"
        )

        line = last_error_line(result)
        assert "space" in line.lower(), line
        trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "target")
        assert opskit_entries(docker_client, target) == []
        assert [b["source"] for b in list_backups(small_store)] == [source]
        assert_store_is_whole(small_store)
        assert store_leftovers(small_store) == []
    finally:
        subprocess.run(["umount", "-l", str(small_store)], check=False)

"""`docker kill` of opskit's helper container mid-backup, mid-unpack and mid-swap: the run fails
with one line that matches the state it leaves, lists nothing partial, and what is left in the
target (a staging directory, a half-done swap) is rolled back or finished by the next run."""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.harness import (
    MiB,
    engine_leftovers,
    journal_phase,
    last_error_line,
    opskit_entries,
    partial_bytes_at_least,
    phase_reached,
    run_ok,
    staged_bytes_at_least,
)
from tests.integration import trees
from tests.integration.daemon_fixtures import assert_store_is_whole
from tests.integration.opskit_cli import (
    HELPER_LABEL,
    describe,
    finish,
    start_opskit,
    volume_mountpoint,
)

pytestmark = pytest.mark.integration


def _kill_helper_when(docker_client, process, event, volume: str, what: str):
    """When `event` happens, `docker kill` the helper mounting `volume`; return the finished
    opskit process. Fail if opskit ended first."""
    deadline = time.monotonic() + 120
    while not event():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"opskit ended before {what}:\n{describe(finish(process))}")
        time.sleep(0.002)
    for summary in docker_client.api.containers(filters={"label": HELPER_LABEL}):
        if any(mount.get("Name") == volume for mount in summary.get("Mounts") or []):
            docker_client.api.kill(summary["Id"])
            break
    else:
        pytest.fail(f"no helper container mounts {volume} at {what}")
    return finish(process, timeout=60)


def test_a_helper_killed_mid_backup_lists_nothing_and_leaves_nothing(
    docker_client, source, tmp_path
):
    store = tmp_path / "store"
    process = start_opskit("volume", "backup", source, "--to", str(store))
    result = _kill_helper_when(
        docker_client, process, partial_bytes_at_least(store, 2 * MiB), source, "the archive grew"
    )
    if result.returncode == 0:
        # The tar had written its last byte into the pipe before the kill: the backup is whole,
        # as it says, and its drill passes.
        assert [record["source"] for record in assert_store_is_whole(store)] == [source]
        run_ok("volume", "verify", "--from", str(store), "--volume", source)
    else:
        line = last_error_line(result)
        assert "killed by SIGKILL" in line, line
        assert assert_store_is_whole(store) == []  # no partial backup, no partial file
        assert "no backups in" in run_ok("volume", "list", "--from", str(store)).stderr
    assert engine_leftovers(docker_client, source) == []


def test_a_helper_killed_mid_unpack_leaves_the_targets_entries_and_the_next_run_cleans(
    docker_client, source, stored, old_target
):
    store, record, _ = stored
    target, old_tree = old_target
    mountpoint = volume_mountpoint(docker_client, target)
    process = start_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force",
        "--backup", record["id"],
    )  # fmt: skip
    result = _kill_helper_when(
        docker_client, process, staged_bytes_at_least(mountpoint, 4 * MiB), target, "unpacking"
    )
    line = last_error_line(result)
    assert "unchanged" in line, line  # the target's own entries were not touched
    run_ok("volume", "recover", target)  # the hidden staging directory goes
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "target")
    assert opskit_entries(docker_client, target) == []
    assert engine_leftovers(docker_client, target) == []
    assert_store_is_whole(store)


def test_a_helper_killed_mid_swap_says_how_to_finish_and_recover_finishes(
    docker_client, source, stored, old_target
):
    store, record, new_tree = stored
    target, _ = old_target
    mountpoint = volume_mountpoint(docker_client, target)
    process = start_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force",
        "--backup", record["id"],
    )  # fmt: skip
    result = _kill_helper_when(
        docker_client, process, phase_reached(mountpoint, "swap-out"), target, "the swap"
    )
    if result.returncode == 0:
        # The kill landed after the last move: the restore was complete, as it says.
        assert "restored" in result.stdout, describe(result)
    else:
        line = last_error_line(result)
        assert "opskit volume recover" in line, line
        assert journal_phase(mountpoint) in ("swap-out", "swap-in", "delete-old")
        recovered = json.loads(run_ok("volume", "recover", target, "--json").stdout)
        assert record["id"] in json.dumps(recovered)
    run_ok("volume", "recover", target)
    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, target), "target")
    assert opskit_entries(docker_client, target) == []
    assert engine_leftovers(docker_client, target) == []

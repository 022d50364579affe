"""SIGINT, SIGTERM and SIGKILL of the opskit process at points chosen by events: bytes written
to the store, each phase of the restore protocol reached (read from the target's journal), a
drill's scratch volume or check container appearing.

Each row checks issue 12's promises: no partial backup is listed; nothing is left behind
(after SIGINT/SIGTERM at once, after SIGKILL once the next opskit command ran); the target is
as it was or fully restored, consistent with what opskit printed; the message and exit code
match what the test then observes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faults.harness import (
    MiB,
    engine_leftovers,
    expect_interrupted,
    journal_phase,
    opskit_entries,
    partial_bytes_at_least,
    phase_reached,
    run_ok,
    staged_bytes_at_least,
    store_leftovers,
    strike_when,
)
from tests.integration import trees
from tests.integration.daemon_fixtures import assert_store_is_whole
from tests.integration.opskit_cli import (
    describe,
    list_backups,
    start_opskit,
    volume_mountpoint,
)

pytestmark = pytest.mark.integration

# --- restore, in every phase of the protocol --------------------------------------------------

# SIGINT and SIGTERM take one path (signals.py): SIGINT once, SIGTERM and SIGKILL everywhere.
RESTORE_STRIKES = [("unpacking", "SIGINT")] + [
    (point, signal_name)
    for point in ("unpacking", "swap-out", "swap-in", "delete-old")
    for signal_name in ("SIGTERM", "SIGKILL")
]


@pytest.mark.parametrize(("point", "signal_name"), RESTORE_STRIKES)
def test_a_forced_restore_struck_in_each_phase_leaves_the_target_whole(
    point, signal_name, docker_client, source, stored, old_target
):
    store, record, new_tree = stored
    target, _ = old_target
    if point == "delete-old":  # many old entries: deleting them takes long enough to strike
        trees.run_in_tree(docker_client, target, "cd many && seq 201 1500 | xargs touch")
    old_tree = trees.snapshot(docker_client, target)
    mountpoint = volume_mountpoint(docker_client, target)
    process = start_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force",
        "--backup", record["id"], "--json",
    )  # fmt: skip
    if point == "unpacking":
        event = staged_bytes_at_least(mountpoint, 8 * MiB)
    else:
        event = phase_reached(mountpoint, point)
    result = strike_when(process, event, signal_name, f"the restore reached {point}")

    committed = point != "unpacking"
    if signal_name == "SIGKILL":
        assert result.returncode != 0
        # The next opskit command on the target finishes a committed swap or rolls back.
        recovered = json.loads(run_ok("volume", "recover", target, "--json").stdout)
        assert record["id"] in json.dumps(recovered) or not committed, recovered
    elif committed:
        # Signals wait for the swap; once it is done the restore is complete and says so.
        assert result.returncode == 0, describe(result)
        restored = json.loads(result.stdout)
        assert restored["signal_after_commit"] == signal_name, describe(result)
        assert restored["backup"]["id"] == record["id"]
        run_ok("volume", "recover", target)  # deletes old contents a strike left waiting
    else:
        expect_interrupted(result, signal_name)
    expected = new_tree if committed else old_tree
    trees.assert_same_tree(expected, trees.snapshot(docker_client, target), "target")
    assert opskit_entries(docker_client, target) == []
    assert journal_phase(mountpoint) is None
    assert engine_leftovers(docker_client, target) == []
    # --force saved what it replaced first; it is listed whole, and named if opskit said so.
    assert_store_is_whole(store)
    safety = [b for b in list_backups(store) if b["source"] == target]
    assert len(safety) == 1 and "pre-restore" in safety[0]["tags"], safety
    if result.returncode == 0:
        assert safety[0]["id"] in result.stdout + result.stderr
    assert store_leftovers(store) == []


# --- backup ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "signal_name"),
    [("helper-started", "SIGTERM"), ("helper-started", "SIGKILL")]
    + [("bytes-written", name) for name in ("SIGINT", "SIGTERM", "SIGKILL")],
)
def test_a_struck_backup_lists_nothing_and_leaves_nothing(
    point, signal_name, docker_client, resources, source, tmp_path
):
    store = tmp_path / "store"
    process = start_opskit(
        "volume", "backup", source, "--to", str(store), "--compress", "gzip", "--json"
    )
    if point == "helper-started":
        event = _helper_of(docker_client, source)
    else:
        event = partial_bytes_at_least(store, 4 * MiB)
    result = strike_when(process, event, signal_name, f"the backup reached {point}")

    expect_interrupted(result, signal_name)
    if signal_name == "SIGKILL":
        # A killed backup's partial archive and helper wait for the next opskit command.
        other = resources.volume()
        run_ok("volume", "backup", other, "--to", str(store))
    assert [b["source"] for b in list_backups(store)] == (
        [] if signal_name != "SIGKILL" else [other]
    )
    assert_store_is_whole(store)
    assert store_leftovers(store) == []
    assert engine_leftovers(docker_client, source) == []


def _helper_of(docker_client, volume: str):
    def started() -> bool:
        for summary in docker_client.api.containers(filters={"label": "io.opskit.helper"}):
            if any(m.get("Name") == volume for m in summary.get("Mounts") or []):
                return True
        return False

    return started


# --- verify ------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("point", ["restoring-scratch", "check-running"])
def test_a_struck_drill_removes_its_scratch_volume_and_records_nothing(
    point, signal_name, docker_client, resources, source, stored
):
    store, record, _ = stored
    store_before = sorted(path.name for path in store.iterdir())
    metadata_before = (store / f"{record['id']}.json").read_bytes()
    process = start_opskit(
        "volume", "verify", "--from", str(store), "--backup", record["id"],
        "--check-image", "busybox:stable", "--check-cmd", "sleep 30", "--json",
    )  # fmt: skip
    if point == "check-running":
        event = _check_of(docker_client, record["id"])
    else:
        event = _scratch_filling(docker_client, record["id"])
    result = strike_when(process, event, signal_name, f"the drill reached {point}")

    expect_interrupted(result, signal_name)
    if signal_name == "SIGKILL":
        # The next opskit command that uses the engine removes what the killed drill left.
        run_ok("volume", "backup", resources.volume(), "--to", str(store))
    else:
        assert (store / f"{record['id']}.json").read_bytes() == metadata_before
    assert engine_leftovers(docker_client, source) == []
    assert store_leftovers(store) == []
    assert set(store_before) <= {path.name for path in store.iterdir()}
    # Nothing was recorded as verified by an interrupted drill.
    assert json.loads((store / f"{record['id']}.json").read_text())["verified_at"] is None


def _scratch_filling(docker_client, backup_id: str):
    def filling() -> bool:
        answer = docker_client.api.volumes(filters={"label": "io.opskit.scratch"}) or {}
        for volume in answer.get("Volumes") or []:
            if backup_id[:40] in volume["Name"]:
                return any(Path(volume["Mountpoint"]).iterdir())
        return False

    return filling


def _check_of(docker_client, backup_id: str):
    def running() -> bool:
        for summary in docker_client.api.containers(filters={"label": "io.opskit.check"}):
            if any(backup_id[:40] in (m.get("Name") or "") for m in summary.get("Mounts") or []):
                return True
        return False

    return running

"""Two opskit runs on one volume at once, in every combination of backup, restore, verify and
prune: each waits for the lock or fails clearly, and they never interleave. The volume ends
as exactly one of its backups (never a mix), every backup written meanwhile holds exactly one
state, and the store lists only whole backups."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from opskit.engine.lock import LOCK_LABEL
from tests.faults.harness import (
    engine_leftovers,
    opskit_entries,
    run_ok,
    store_leftovers,
)
from tests.integration import trees
from tests.integration.daemon_fixtures import assert_store_is_whole
from tests.integration.opskit_cli import (
    backup,
    describe,
    finish,
    list_backups,
    start_opskit,
)

pytestmark = pytest.mark.integration

OPERATIONS = ["backup", "restore", "verify", "prune"]
PAIRS = list(itertools.combinations_with_replacement(OPERATIONS, 2))
# What a run that lost the race may say: the lock, a user of the target, a backup removed.
CLEAR_REFUSALS = ("locked", "another opskit", "in use", "no backup", "was removed", "not found")


# An app that takes 3 s to stop: a run with --stop-containers holds the volume's lock that long,
# so the second run surely starts while the first one works (no big data needed).
SLOW_TO_STOP = ["sh", "-c", "trap 'sleep 3; exit 0' TERM; sleep 600 & wait"]


@pytest.fixture
def subject(docker_client, resources, unique_name, tmp_path):
    """A volume S in two states, each backed up: B0 (state N) and B1 (state M: N plus one
    file; S holds M now), used by an app that is slow to stop. Returns (S, store, B0, {state:
    tree})."""
    store = tmp_path / "store"
    volume = resources.volume(f"{unique_name}-s")
    trees.populate_random(docker_client, volume, megabytes=2)
    trees.run_in_tree(docker_client, volume, "mkdir app && cd app && seq 1 300 | xargs touch")
    tree_n = trees.snapshot(docker_client, volume)
    b0 = backup(volume, store)
    trees.run_in_tree(docker_client, volume, "echo changed > changed.txt")
    tree_m = trees.snapshot(docker_client, volume)
    backup(volume, store)
    resources.container(command=SLOW_TO_STOP, volumes={volume: {"bind": "/data"}})
    return volume, store, b0, {"N": tree_n, "M": tree_m}


def _command(operation: str, volume: str, store, b0: dict, first: bool) -> list[str]:
    """The run; the first of a pair is made slow: it stops the app, or its drill's check
    sleeps."""
    slow = (
        {
            "backup": ["--stop-containers"],
            "restore": ["--stop-containers"],
            "verify": ["--check-image", "busybox:stable", "--check-cmd", "sleep 3"],
            "prune": [],
        }[operation]
        if first
        else []
    )
    return {
        "backup": ["volume", "backup", volume, "--to", str(store)],
        "restore": ["volume", "restore", volume, "--from", str(store), "--into", volume,
                    "--force", "--backup", b0["id"]],
        "verify": ["volume", "verify", "--from", str(store), "--backup", b0["id"]],
        "prune": ["volume", "prune", "--from", str(store), "--volume", volume, "--keep-last",
                  "1"],
    }[operation] + slow  # fmt: skip


def _working(docker_client, operation: str, volume: str) -> bool:
    """Whether a started run holds what makes it a competitor: the volume's lock (backup,
    restore) or a scratch volume (verify). A prune is too quick to catch: it starts second."""
    if operation in ("backup", "restore"):
        locks = docker_client.api.containers(all=True, filters={"label": LOCK_LABEL})
        return any((s.get("Labels") or {}).get(LOCK_LABEL) == f"volume {volume}" for s in locks)
    answer = docker_client.api.volumes(filters={"label": "io.opskit.scratch"}) or {}
    return any(volume in v["Name"] for v in answer.get("Volumes") or [])


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_two_runs_on_one_volume_wait_or_fail_clearly_and_never_interleave(
    first, second, docker_client, resources, subject
):
    volume, store, b0, states = subject
    before = {b["id"] for b in list_backups(store)}
    first_run = start_opskit(*_command(first, volume, store, b0, first=True))
    if first != "prune":
        deadline = time.monotonic() + 60
        while not _working(docker_client, first, volume):
            assert first_run.poll() is None, describe(finish(first_run))
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.005)
    second_run = start_opskit(*_command(second, volume, store, b0, first=False))
    results = {"first": finish(first_run), "second": finish(second_run)}

    for which, result in results.items():
        if result.returncode != 0:
            assert "Traceback" not in result.stderr, describe(result)
            last = [line for line in result.stderr.splitlines() if line.strip()][-1]
            assert last.startswith("error: "), describe(result)
            assert any(word in last for word in CLEAR_REFUSALS), f"{which}: {describe(result)}"
    assert any(r.returncode == 0 for r in results.values()), [describe(r) for r in results.values()]

    # The volume holds exactly one state: N if a restore of B0 ran, else M.
    restored = any(
        op == "restore" and results[which].returncode == 0
        for op, which in ((first, "first"), (second, "second"))
    )
    expected = states["N"] if restored else states["M"]
    trees.assert_same_tree(expected, trees.snapshot(docker_client, volume), "volume")
    assert opskit_entries(docker_client, volume) == []
    # Every backup written meanwhile holds exactly one whole state, never a mix.
    assert_store_is_whole(store)
    for record in list_backups(store):
        if record["id"] in before or record["source"] != volume:
            continue
        check = resources.volume()
        run_ok("volume", "restore", volume, "--from", str(store), "--into", check,
               "--backup", record["id"])  # fmt: skip
        tree = trees.snapshot(docker_client, check)
        assert not trees.diff(states["M"], tree) or not trees.diff(states["N"], tree), (
            f"backup {record['id']} holds neither state: {trees.diff(states['M'], tree)[:5]}"
        )
    assert store_leftovers(store) == []
    assert engine_leftovers(docker_client, volume) == []
    _assert_verify_recorded_truthfully(store, b0, results, first, second)


def _assert_verify_recorded_truthfully(store, b0, results, first, second) -> None:
    """A drill that succeeded recorded its outcome, unless a prune removed the backup, in
    which case the backup stays removed (its metadata is not written again)."""
    listed = {b["id"]: b for b in list_backups(store)}
    pruned = any(
        op == "prune" and results[which].returncode == 0
        for op, which in ((first, "first"), (second, "second"))
    )
    if pruned:
        assert b0["id"] not in listed, "prune --keep-last 1 kept the older backup"
        assert not (store / f"{b0['id']}.json").exists()
    elif "verify" in (first, second):
        assert listed[b0["id"]]["verified_ok"] is True, json.dumps(listed[b0["id"]])

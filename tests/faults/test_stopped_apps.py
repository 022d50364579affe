"""SIGKILL of an opskit that had stopped an application (--stop-containers): nothing else can
start it again, so the next opskit command must: after a backup it starts the app; after a
restore, whose target may be half swapped in, it names the app and leaves it stopped."""

from __future__ import annotations

import pytest

from opskit.engine.stop_marks import STOPPED_LABEL
from tests.faults.harness import (
    MiB,
    engine_leftovers,
    partial_bytes_at_least,
    phase_reached,
    run_ok,
    strike_when,
)
from tests.integration import trees
from tests.integration.opskit_cli import STOPPABLE_COMMAND, start_opskit, volume_mountpoint

pytestmark = pytest.mark.integration


def _running(docker_client, container) -> bool:
    container.reload()
    return container.status == "running"


def _marks_of(docker_client, container) -> list[str]:
    return [
        summary["Id"]
        for summary in docker_client.api.containers(all=True, filters={"label": STOPPED_LABEL})
        if (summary.get("Labels") or {}).get(STOPPED_LABEL) == container.id
    ]


def test_an_app_stopped_by_a_killed_backup_is_started_by_the_next_command(
    docker_client, resources, source, tmp_path
):
    app = resources.container(command=STOPPABLE_COMMAND, volumes={source: {"bind": "/data"}})
    store = tmp_path / "store"
    process = start_opskit(
        "volume", "backup", source, "--to", str(store), "--compress", "gzip",
        "--stop-containers", "--json",
    )  # fmt: skip
    strike_when(process, partial_bytes_at_least(store, 4 * MiB), "SIGKILL", "bytes were written")
    assert not _running(docker_client, app), "the backup had not stopped the app"
    assert len(_marks_of(docker_client, app)) == 1

    run_ok("volume", "backup", resources.volume(), "--to", str(store))

    # Started by this command, or by any other opskit command on the host that came first
    # (which logs "started a container again that a killed opskit had stopped").
    assert _running(docker_client, app), "the next command did not start the app again"
    assert _marks_of(docker_client, app) == []
    assert engine_leftovers(docker_client, source) == []


def test_an_app_stopped_by_a_killed_restore_stays_stopped_and_is_named(
    docker_client, resources, source, stored, old_target
):
    store, record, new_tree = stored
    target, _ = old_target
    app = resources.container(command=STOPPABLE_COMMAND, volumes={target: {"bind": "/data"}})
    process = start_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force",
        "--stop-containers", "--backup", record["id"], "--json",
    )  # fmt: skip
    mountpoint = volume_mountpoint(docker_client, target)
    strike_when(process, phase_reached(mountpoint, "swap-out"), "SIGKILL", "the swap began")

    # The next command does not start an app on a half-swapped target, and says so.
    result = run_ok("volume", "backup", resources.volume(), "--to", str(store))
    assert not _running(docker_client, app)
    assert "still stopped" in result.stderr and app.name in result.stderr, result.stderr
    run_ok("volume", "recover", target)
    trees.assert_same_tree(new_tree, trees.snapshot(docker_client, target), "target")
    app.start()
    run_ok("volume", "backup", resources.volume(), "--to", str(store))
    assert _marks_of(docker_client, app) == []

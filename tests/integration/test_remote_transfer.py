"""The remote transfer (`--transfer remote`) forced on the local engine: it holds no lock on
the helper container, where the engine's archive endpoint blocks it for the whole transfer.

Its fidelity is proven with the rest in test_fidelity.py, and a backup on a second engine
restored on this one in test_two_engines.py.
"""

from __future__ import annotations

import time

import docker
import pytest
import requests

from opskit.actions import backup as backup_action
from opskit.actions.context import RunContext
from tests.integration.opskit_cli import HELPER_LABEL
from tests.integration.trees import populate_random

pytestmark = pytest.mark.integration

INSPECT_TIMEOUT = 5


def _helper_of(client: docker.DockerClient, volume: str) -> str:
    found = client.api.containers(filters={"label": HELPER_LABEL, "volume": volume}, quiet=True)
    assert len(found) == 1, found
    return str(found[0]["Id"])


def _inspect_during_backup(transfer: str, volume: str, store, docker_client) -> dict:
    """Back `volume` up with `transfer`; at the first progress report (mid-stream: the
    archive is still being read), inspect the helper and list containers from another
    connection. Return what they took, or that they timed out."""
    probe = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=INSPECT_TIMEOUT)
    seen: dict = {}

    def probe_once(_: int) -> None:
        if seen:
            return
        helper = _helper_of(docker_client, volume)
        for name, call in (
            ("inspect", lambda: probe.api.inspect_container(helper)),
            ("exec", lambda: probe.api.exec_create(helper, ["true"])),
            ("list", lambda: probe.containers.list()),
        ):
            started = time.monotonic()
            try:
                call()
                seen[name] = time.monotonic() - started
            except requests.exceptions.ReadTimeout:
                seen[name] = "timed out"

    request = backup_action.BackupRequest(source=volume, to=str(store), transfer=transfer)
    try:
        with RunContext() as context:
            record = backup_action.run_backup(request, context, on_progress=probe_once)
    finally:
        probe.close()
    assert record.transfer == transfer
    return seen


def test_the_helper_answers_inspect_exec_and_list_during_a_remote_backup(
    docker_client, resources, tmp_path
):
    volume = resources.volume()
    populate_random(docker_client, volume, megabytes=64, files=4)

    seen = _inspect_during_backup("remote", volume, tmp_path / "store", docker_client)

    assert set(seen) == {"inspect", "exec", "list"}, seen
    assert all(isinstance(took, float) and took < 2 for took in seen.values()), seen


def test_the_archive_endpoint_blocks_them_which_is_why_remote_exists(
    docker_client, resources, tmp_path
):
    """The contrast that makes the test above mean something: the same probe times out."""
    volume = resources.volume()
    populate_random(docker_client, volume, megabytes=64, files=4)

    seen = _inspect_during_backup("archive-api", volume, tmp_path / "store", docker_client)

    assert seen["inspect"] == "timed out", seen

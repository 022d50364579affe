"""The restore drill on the real engine (issue 9, "Verify"): a good backup passes, a flipped
byte and a truncation are caught and recorded, the application check's outcome counts, and
the scratch volume is removed in every case, Ctrl-C included."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import docker
import pytest

from tests.integration import trees
from tests.integration.opskit_cli import (
    assert_failed_with_one_line,
    backup,
    describe,
    finish,
    list_backups,
    run_opskit,
    start_opskit,
)

pytestmark = pytest.mark.integration

SCRATCH_LABEL = "io.opskit.scratch"
SCRATCH_OF_LABEL = "io.opskit.scratch.backup"
CHECK_LABEL = "io.opskit.check"


def check_containers(docker_client, backup_id: str) -> list[str]:
    """The names of check containers of drills of `backup_id` (they mount its scratch volume);
    other tests' drills, running in parallel, are not counted."""
    found = []
    for container in docker_client.containers.list(all=True, filters={"label": CHECK_LABEL}):
        try:
            mounts = container.attrs.get("Mounts") or []
        except docker.errors.NotFound:
            continue
        if any(backup_id in (mount.get("Name") or "") for mount in mounts):
            found.append(container.name)
    return found


CHECK_IMAGE = trees.HELPER_IMAGE


def scratch_volumes(client: docker.DockerClient, backup_id: str) -> list[str]:
    found = client.volumes.list(filters={"label": f"{SCRATCH_OF_LABEL}={backup_id}"})
    return [volume.name for volume in found]


def recorded(store: Path, backup_id: str) -> dict:
    """The backup's metadata as `list` shows it."""
    (record,) = [item for item in list_backups(store) if item["id"] == backup_id]
    return record


def verify(store: Path, *options: str):
    return run_opskit("volume", "verify", "--from", str(store), *options)


def verify_json(store: Path, *options: str) -> tuple[int, dict]:
    result = verify(store, *options, "--json")
    assert "Traceback" not in result.stderr, describe(result)
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError as exc:
        message = f"stdout is not one JSON document ({exc})\n{describe(result)}"
        raise AssertionError(message) from exc


@pytest.fixture
def small_backup(docker_client, resources, unique_name, tmp_path):
    """A volume with a few files, backed up once: (source, store, record)."""
    source = resources.volume(f"{unique_name}-src")
    trees.populate_files(docker_client, source, {"plain.txt": "hello\n", "dir/b": "b\n" * 1000})
    store = tmp_path / "backups"
    return source, store, backup(source, store)


def test_verify_passes_on_a_tricky_tree_and_records_it(
    docker_client, resources, unique_name, tmp_path
):
    source = resources.volume(f"{unique_name}-src")
    trees.populate_tricky_tree(docker_client, source)
    store = tmp_path / "backups"
    record = backup(source, store)

    exit_code, document = verify_json(store, "--volume", source)

    assert exit_code == 0, document
    (outcome,) = document["backups"]
    assert outcome["ok"] and outcome["backup_id"] == record["id"], outcome
    assert outcome["steps"] == {
        "archive": "passed",
        "restore": "passed",
        "compare": "passed",
        "check": "skipped",
    }
    assert outcome["entries"] > 80  # the whole tricky tree was compared, not a vacuous one
    assert "subsecond-mtimes" in outcome["compared"] and "dir-mtimes" in outcome["compared"]
    stored = recorded(store, record["id"])
    assert stored["verified_ok"] is True and stored["verified_at"], stored
    assert scratch_volumes(docker_client, record["id"]) == []


def test_verify_catches_a_flipped_byte(docker_client, small_backup):
    source, store, record = small_backup
    archive = store / record["archive"]
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))

    result = verify(store, "--volume", source)

    assert_failed_with_one_line(
        result, "verification", record["id"], "checksum", notices=("verifying",)
    )
    assert "FAILED" in result.stdout and "archive failed" in result.stdout, describe(result)
    stored = recorded(store, record["id"])
    assert stored["verified_ok"] is False and "checksum" in stored["verified_reason"], stored
    assert scratch_volumes(docker_client, record["id"]) == []


def test_verify_catches_a_truncated_archive(docker_client, small_backup):
    source, store, record = small_backup
    archive = store / record["archive"]
    archive.write_bytes(archive.read_bytes()[: record["size"] // 2])

    exit_code, document = verify_json(store, "--volume", source)

    assert exit_code == 1, document
    (outcome,) = document["backups"]
    assert not outcome["ok"] and outcome["steps"]["archive"] == "failed", outcome
    stored = recorded(store, record["id"])
    assert stored["verified_ok"] is False and stored["verified_reason"], stored
    assert scratch_volumes(docker_client, record["id"]) == []


def test_verify_reports_a_failing_check(docker_client, small_backup):
    source, store, record = small_backup

    result = verify(
        store,
        "--volume",
        source,
        "--check-image",
        CHECK_IMAGE,
        "--check-cmd",
        "sh -c 'echo looking for /data/missing; test -f /data/missing'",
    )

    assert_failed_with_one_line(result, "check exited 1", record["id"], notices=("verifying",))
    assert "looking for /data/missing" in result.stdout, describe(result)
    stored = recorded(store, record["id"])
    assert stored["verified_ok"] is False and "check" in stored["verified_reason"], stored
    assert scratch_volumes(docker_client, record["id"]) == []
    assert check_containers(docker_client, record["id"]) == []


def test_verify_passes_a_passing_check(docker_client, small_backup):
    source, store, record = small_backup

    exit_code, document = verify_json(
        store,
        "--volume",
        source,
        "--check-image",
        CHECK_IMAGE,
        "--check-cmd",
        "sh -c 'test -f /data/plain.txt && grep -q hello /data/plain.txt'",
    )

    assert exit_code == 0, document
    assert document["backups"][0]["steps"]["check"] == "passed", document
    assert recorded(store, record["id"])["verified_ok"] is True
    assert scratch_volumes(docker_client, record["id"]) == []


def test_verify_all_records_each_outcome(docker_client, small_backup):
    source, store, first = small_backup
    second = backup(source, store)
    archive = store / second["archive"]
    archive.write_bytes(archive.read_bytes()[:-7])

    exit_code, document = verify_json(store, "--volume", source, "--backup", "all")

    assert exit_code == 1, document
    outcomes = {item["backup_id"]: item["ok"] for item in document["backups"]}
    assert outcomes == {first["id"]: True, second["id"]: False}
    assert recorded(store, first["id"])["verified_ok"] is True
    assert recorded(store, second["id"])["verified_ok"] is False


def test_verify_interrupted_removes_the_scratch_volume_and_the_check(docker_client, small_backup):
    source, store, record = small_backup
    process = start_opskit(
        "volume", "verify", "--from", str(store), "--volume", source,
        "--check-image", CHECK_IMAGE, "--check-cmd", "sleep 60",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not check_containers(docker_client, record["id"]):
            assert process.poll() is None, finish(process).stderr
            assert time.monotonic() < deadline, "the check never started"
            time.sleep(0.1)
        assert scratch_volumes(docker_client, record["id"])  # mid-verify: it exists
        process.send_signal(signal.SIGINT)
    finally:
        result = finish(process, timeout=60)

    assert result.returncode == 130, describe(result)
    assert scratch_volumes(docker_client, record["id"]) == []
    assert check_containers(docker_client, record["id"]) == []
    assert recorded(store, record["id"])["verified_at"] is None  # an interrupted drill says nothing


def test_a_killed_verify_leaves_nothing_after_the_next_run(docker_client, small_backup, tmp_path):
    """SIGKILL cannot be caught: the scratch volume, its check container and its lock stay,
    and the very next opskit run that touches the engine removes them (their owner is dead)."""
    source, store, record = small_backup
    process = start_opskit(
        "volume", "verify", "--from", str(store), "--volume", source,
        "--check-image", CHECK_IMAGE, "--check-cmd", "sleep 60",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not check_containers(docker_client, record["id"]):
            assert process.poll() is None, finish(process).stderr
            assert time.monotonic() < deadline, "the check never started"
            time.sleep(0.1)
    finally:
        process.kill()
        process.wait()
    assert scratch_volumes(docker_client, record["id"]), "nothing was left to clean up"

    later = run_opskit("volume", "backup", source, "--to", str(tmp_path / "later"))

    assert later.returncode == 0, describe(later)
    assert scratch_volumes(docker_client, record["id"]) == []
    assert check_containers(docker_client, record["id"]) == []
    locks = docker_client.containers.list(all=True, filters={"label": "io.opskit.lock"})
    assert [c.name for c in locks if "opskit-verify" in c.labels["io.opskit.lock"]] == []

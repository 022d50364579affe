"""Snapshots of a compose project and their restore as a set (issue 9), on the real engine.

The project is made as compose would label it, with plain `docker run --label
com.docker.compose.project=...` (no compose binary needed).
"""

from __future__ import annotations

import json

import pytest

from tests.integration import trees
from tests.integration.opskit_cli import (
    STOPPABLE_COMMAND,
    assert_failed_with_one_line,
    describe,
    docker_time,
    files_in,
    list_backups,
    run_json,
    run_opskit,
    started_at,
)

pytestmark = pytest.mark.integration

DB_FILES = {"base/1": "rows\n" * 50, "PG_VERSION": "15\n"}
WEB_FILES = {"uploads/logo.png": "png\n", "config.yml": "port: 80\n"}


@pytest.fixture
def project(docker_client, resources, unique_name):
    """A two-service project `unique_name`: db and web, each with a labelled volume and a
    running container. Returns (name, {service: volume}, {service: container})."""
    name = unique_name
    volumes, containers = {}, {}
    for service, files in (("db", DB_FILES), ("web", WEB_FILES)):
        volume = resources.volume(
            f"{name}_{service}",
            labels={"com.docker.compose.project": name, "com.docker.compose.volume": service},
        )
        trees.populate_files(docker_client, volume, files)
        containers[service] = resources.container(
            command=STOPPABLE_COMMAND,
            name=f"{name}-{service}-1",
            volumes={volume: {"bind": "/data", "mode": "rw"}},
            labels={
                "com.docker.compose.project": name,
                "com.docker.compose.service": service,
                "com.docker.compose.project.config_files": f"/srv/{name}/compose.yaml",
                "com.docker.compose.project.working_dir": f"/srv/{name}",
            },
        )
        volumes[service] = volume
    return name, volumes, containers


def test_snapshot_stops_once_restarts_and_records_the_set(docker_client, project, tmp_path):
    name, volumes, containers = project
    before = {service: started_at(docker_client, c.id)[1] for service, c in containers.items()}
    store = tmp_path / "backups"

    result = run_opskit(
        "volume", "snapshot", "--project", name, "--to", str(store), "--stop-containers", "--json"
    )

    assert result.returncode == 0, describe(result)
    document = json.loads(result.stdout)
    snapshot = document["snapshot"]
    assert sorted(member["source"] for member in snapshot["members"]) == sorted(volumes.values())
    assert snapshot["compose_files"] == [f"/srv/{name}/compose.yaml"]
    assert snapshot["tags"] == ["pre-upgrade"]
    assert result.stderr.count("stopping ") == 1, describe(result)
    for service, container in containers.items():
        running, after = started_at(docker_client, container.id)
        assert running, f"{service} is not running again"
        assert docker_time(after) > docker_time(before[service])
    records = list_backups(store, "--snapshot", snapshot["id"])
    assert sorted(record["source"] for record in records) == sorted(volumes.values())
    assert all(record["tags"] == ["pre-upgrade"] for record in records)
    assert (store / "snapshots" / f"{snapshot['id']}.json").is_file()


def test_snapshot_restores_as_a_set_with_force(docker_client, project, tmp_path):
    name, volumes, containers = project
    store = tmp_path / "backups"
    expected = {
        service: trees.snapshot(docker_client, volume) for service, volume in volumes.items()
    }
    snapshot = run_json("volume", "snapshot", "--project", name, "--to", str(store), "--tag",
                        "before-v2")["snapshot"]  # fmt: skip
    for volume in volumes.values():  # the upgrade goes wrong
        trees.run_in_tree(docker_client, volume, "rm -rf ./* && echo broken > broken.txt")

    restored = run_json(
        "volume", "restore", "--snapshot", snapshot["id"], "--from", str(store), "--force",
        "--stop-containers",
    )  # fmt: skip

    assert sorted(item["target"] for item in restored["restored"]) == sorted(volumes.values())
    assert all(item["safety_backup"] for item in restored["restored"])
    for service, volume in volumes.items():
        trees.assert_same_tree(expected[service], trees.snapshot(docker_client, volume), service)
    for container in containers.values():
        assert started_at(docker_client, container.id)[0]


def test_snapshot_restore_refused_for_one_member_touches_no_target(
    docker_client, project, tmp_path
):
    name, volumes, containers = project
    store = tmp_path / "backups"
    snapshot = run_json("volume", "snapshot", "--project", name, "--to", str(store))["snapshot"]
    changed = {
        service: trees.snapshot(docker_client, volume) for service, volume in volumes.items()
    }
    started = {service: started_at(docker_client, c.id)[1] for service, c in containers.items()}
    # Only web's container stops being a problem: db is still in use, so the set is refused.
    containers["web"].stop(timeout=1)
    stored_before = files_in(store)

    result = run_opskit(
        "volume", "restore", "--snapshot", snapshot["id"], "--from", str(store), "--force"
    )

    assert_failed_with_one_line(result, "nothing was changed", volumes["db"], "--stop-containers")
    for service, volume in volumes.items():
        trees.assert_same_tree(changed[service], trees.snapshot(docker_client, volume), service)
    assert files_in(store) == stored_before  # not even a pre-restore backup
    assert started_at(docker_client, containers["db"].id) == (True, started["db"])


def test_snapshot_restore_with_a_missing_archive_is_refused_before_anything(
    docker_client, project, tmp_path
):
    name, volumes, _ = project
    store = tmp_path / "backups"
    snapshot = run_json("volume", "snapshot", "--project", name, "--to", str(store))["snapshot"]
    web_member = next(m for m in snapshot["members"] if m["source"] == volumes["web"])
    next(store.glob(f"{web_member['backup']}.tar*")).unlink()
    before = trees.snapshot(docker_client, volumes["db"])

    result = run_opskit(
        "volume", "restore", "--snapshot", snapshot["id"], "--from", str(store), "--force",
        "--stop-containers",
    )  # fmt: skip

    assert_failed_with_one_line(result, "nothing was changed", web_member["backup"], "missing")
    trees.assert_same_tree(before, trees.snapshot(docker_client, volumes["db"]), "db")


def test_snapshot_restore_with_a_flipped_byte_in_one_member_touches_no_target(
    docker_client, project, tmp_path
):
    """Same size, other bytes: caught by reading every member's archive before the first swap."""
    name, volumes, _ = project
    store = tmp_path / "backups"
    snapshot = run_json("volume", "snapshot", "--project", name, "--to", str(store))["snapshot"]
    web_member = next(m for m in snapshot["members"] if m["source"] == volumes["web"])
    archive = next(store.glob(f"{web_member['backup']}.tar*"))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    before = {service: trees.snapshot(docker_client, volume) for service, volume in volumes.items()}
    trees.populate_files(docker_client, volumes["db"], {"changed-after": "x\n"})
    changed_db = trees.snapshot(docker_client, volumes["db"])

    result = run_opskit(
        "volume", "restore", "--snapshot", snapshot["id"], "--from", str(store), "--force",
        "--stop-containers",
    )  # fmt: skip

    assert_failed_with_one_line(result, "nothing was changed", "corrupt")
    trees.assert_same_tree(changed_db, trees.snapshot(docker_client, volumes["db"]), "db")
    trees.assert_same_tree(before["web"], trees.snapshot(docker_client, volumes["web"]), "web")


def test_snapshot_with_a_failing_member_leaves_no_snapshot_and_no_members(
    docker_client, project, tmp_path
):
    name, volumes, containers = project
    store = tmp_path / "backups"
    # web (the second member) holds an owner busybox tar cannot store: it fails after db's
    # backup was written.
    trees.run_in_tree(docker_client, volumes["web"], "chown 20000000:0 config.yml")

    result = run_opskit(
        "volume", "snapshot", "--project", name, "--to", str(store), "--stop-containers",
        "--helper-image", "busybox:stable",
    )  # fmt: skip

    line = assert_failed_with_one_line(
        result, "snapshot of project", volumes["web"], notices=("stopping", "started", "running")
    )
    assert "removed the 1 member backups" in line
    assert list_backups(store) == []
    assert not list((store / "snapshots").glob("*")) if (store / "snapshots").exists() else True
    for container in containers.values():
        assert started_at(docker_client, container.id)[0]


def test_snapshot_of_an_unknown_project_fails_with_one_line(unique_name, tmp_path):
    result = run_opskit("volume", "snapshot", "--project", unique_name, "--to", str(tmp_path))

    assert_failed_with_one_line(result, "compose project", unique_name)


def test_snapshot_also_stops_project_containers_that_mount_none_of_it(
    docker_client, project, resources, tmp_path
):
    """An app server that writes to the database over the network must not run while the
    database's volume is read: the project's running containers are all stopped once."""
    name, _, _ = project
    worker = resources.container(
        command=STOPPABLE_COMMAND,
        name=f"{name}-worker-1",
        labels={"com.docker.compose.project": name, "com.docker.compose.service": "worker"},
    )
    _, before = started_at(docker_client, worker.id)

    result = run_opskit(
        "volume", "snapshot", "--project", name, "--to", str(tmp_path / "b"), "--stop-containers"
    )

    assert result.returncode == 0, describe(result)
    running, after = started_at(docker_client, worker.id)
    assert running, "the worker is not running again"
    assert docker_time(after) > docker_time(before), "the worker was not stopped"

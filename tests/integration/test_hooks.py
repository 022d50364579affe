"""Backup hooks from container labels (issue 9): order, failure, timeout, the post hook's
result, on the real engine through the CLI."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.integration import trees
from tests.integration.opskit_cli import (
    STOPPABLE_COMMAND,
    assert_failed_with_one_line,
    backup,
    describe,
    list_backups,
    run_opskit,
    started_at,
)

pytestmark = pytest.mark.integration


def archive_members(store: Path, record: dict) -> dict[str, bytes]:
    """The regular files of a stored .tar.zst archive, by name without `./`."""
    with (store / record["archive"]).open("rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw)
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            found = {}
            for member in archive:
                if member.isfile():
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    found[member.name.removeprefix("./")] = extracted.read()
            return found


def app_with_hooks(resources, volume: str, **labels: str):
    return resources.container(
        command=STOPPABLE_COMMAND, volumes={volume: {"bind": "/data", "mode": "rw"}}, labels=labels
    )


def read_file(docker_client, volume: str, path: str) -> str:
    return trees.run_in_tree(docker_client, volume, f"cat {path}").decode()


def test_pre_hook_output_is_in_the_archive_and_post_hook_runs_after(
    docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-db")
    app_with_hooks(
        resources,
        volume,
        **{
            # a pg_dump-like dump into the volume, before it is read
            "opskit.backup.pre": "echo 'CREATE TABLE t (id int);' > /data/dump.sql; "
            "echo pre >> /data/order.log",
            "opskit.backup.post": "echo post >> /data/order.log; "
            'echo "$OPSKIT_BACKUP_RESULT" > /data/result.txt',
        },
    )
    store = tmp_path / "backups"

    record = backup(volume, store)

    members = archive_members(store, record)
    assert members["dump.sql"] == b"CREATE TABLE t (id int);\n"
    assert members["order.log"] == b"pre\n"  # read after pre, before post
    assert read_file(docker_client, volume, "/data/order.log") == "pre\npost\n"
    assert read_file(docker_client, volume, "/data/result.txt") == "success\n"


def test_failing_pre_hook_fails_the_backup_with_its_output_and_post_hook_sees_failure(
    docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-db")
    app = app_with_hooks(
        resources,
        volume,
        **{
            "opskit.backup.pre": "echo connecting; echo 'pg_dump: error: connection refused' >&2;"
            " exit 7",
            "opskit.backup.post": 'echo "$OPSKIT_BACKUP_RESULT" > /data/result.txt',
        },
    )
    _, started_before = started_at(docker_client, app.id)
    store = tmp_path / "backups"

    result = run_opskit("volume", "backup", volume, "--to", str(store), "--stop-containers")

    assert_failed_with_one_line(
        result, "pre hook", app.name, "exited 7", "connection refused", notices=("running the",)
    )
    assert list_backups(store) == []
    assert read_file(docker_client, volume, "/data/result.txt") == "failure\n"
    running, started_after = started_at(docker_client, app.id)
    assert running and started_after == started_before  # a failed pre hook stops nothing


def test_pre_hook_past_its_timeout_is_killed_and_fails_the_backup(
    docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-db")
    app = app_with_hooks(
        resources,
        volume,
        **{"opskit.backup.pre": "echo starting dump; sleep 120", "opskit.backup.timeout": "2"},
    )
    store = tmp_path / "backups"

    result = run_opskit("volume", "backup", volume, "--to", str(store), timeout=60)

    assert_failed_with_one_line(
        result, "timed out", "starting dump", notices=("running the", "warning:")
    )
    processes = subprocess.run(
        ["docker", "exec", app.id, "ps"], capture_output=True, text=True, check=True
    ).stdout
    assert "sleep 120" not in processes  # the hook was killed, not left running
    assert list_backups(store) == []


def test_hooks_with_stop_containers_run_before_the_stop_and_after_the_restart(
    docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-db")
    # Each hook records the container's own start time: the same container must be running.
    app_with_hooks(
        resources,
        volume,
        **{
            "opskit.backup.pre": "echo pre $(cat /proc/1/stat | cut -d' ' -f22) >> /data/h.log",
            "opskit.backup.post": "echo post $(cat /proc/1/stat | cut -d' ' -f22) >> /data/h.log",
        },
    )

    result = run_opskit(
        "volume", "backup", volume, "--to", str(tmp_path / "b"), "--stop-containers"
    )

    assert result.returncode == 0, describe(result)
    notices = [line for line in result.stderr.splitlines() if line.strip()]
    order = [
        next(index for index, line in enumerate(notices) if line.startswith(prefix))
        for prefix in ("running the pre hook", "stopping", "started", "running the post hook")
    ]
    assert order == sorted(order), describe(result)
    log = read_file(docker_client, volume, "/data/h.log").split()
    assert log[0] == "pre" and log[2] == "post"
    assert log[1] != log[3]  # the post hook ran in the restarted container


def test_failing_post_hook_keeps_the_backup_and_exits_1(
    docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-db")
    app_with_hooks(resources, volume, **{"opskit.backup.post": "echo cannot resume; exit 3"})
    store = tmp_path / "backups"

    result = run_opskit("volume", "backup", volume, "--to", str(store))

    assert_failed_with_one_line(result, "post hook", "exited 3", "cannot resume",
                                notices=("running the", "warning:"))  # fmt: skip
    assert "backed up volume" in result.stdout
    assert [record["source"] for record in list_backups(store)] == [volume]

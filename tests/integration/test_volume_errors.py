"""Every error of issue 2 as a user meets it: one `error:` line on stderr, no traceback, exit code
1 (2 for usage errors), nothing half-written, no helper container left, and a restore target
that keeps its contents. Ends with Ctrl-C and SIGTERM in the middle of a backup and a restore."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from tests.integration import trees
from tests.integration.opskit_cli import (
    HELPER_LABEL,
    REPOSITORY,
    STOPPABLE_COMMAND,
    assert_failed_with_one_line,
    backup,
    describe,
    files_in,
    helpers_using,
    list_backups,
    opskit_command,
    opskit_environment,
    remove_helpers_using,
    run_opskit,
    started_at,
    volume_mountpoint,
)

pytestmark = pytest.mark.integration

SAVED_NOTICE = ("saved the current contents",)
# Compressible contents, so that damage inside the zstd frame is seen by the decompressor.
TEXT_SCRIPT = (
    "set -e\nmkdir logs\n"
    "for i in $(seq 1 8); do seq 1 3000 | sed 's/^/line /' > logs/app-$i.log; done"
)


@pytest.fixture
def mount_tmpfs(tmp_path: Path):
    """Mount a tmpfs with the given options on a new directory below tmp_path (needs root)."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs (run the tests as root): {result.stderr}")
        mounted.append(directory)
        return directory

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.fixture
def text_volume(docker_client, resources, unique_name):
    volume = resources.volume(f"{unique_name}-text")
    trees.run_in_tree(docker_client, volume, TEXT_SCRIPT)
    return volume


@pytest.fixture
def old_target(docker_client, resources, unique_name):
    """A non-empty restore target; returns (name, snapshot)."""
    target = resources.volume(f"{unique_name}-target")
    trees.populate_files(docker_client, target, {"keep.txt": "old data\n", ".hidden": "h\n"})
    return target, trees.snapshot(docker_client, target)


def assert_store_is_whole(store: Path, expected_backups: int, damaged: str = "") -> None:
    """The store holds exactly `expected_backups` complete backups and no partial file (the
    archive named `damaged`, which the test altered, is not checked against its metadata)."""
    names = files_in(store)
    if "index" in names:  # the record index: one file, holding copies of listed records
        assert [name for name in names if name.startswith("index")] == [
            "index",
            "index/records.json",
        ], names
        names = [name for name in names if not name.startswith("index")]
    assert not [name for name in names if "partial" in name], names
    archives = [name for name in names if not name.endswith(".json")]
    metadata = [name for name in names if name.endswith(".json")]
    assert len(metadata) == expected_backups and len(archives) == expected_backups, names
    for name in metadata:
        record = json.loads((store / name).read_text())
        archive = store / record["archive"]
        assert archive.is_file(), record
        if record["archive"] != damaged:
            assert archive.stat().st_size == record["size"], record


@pytest.fixture(autouse=True)
def _remove_leaked_helpers(docker_client, resources, tmp_path):
    """After a test, remove helper containers a failed run left on the test's volumes and paths,
    so that the volumes can be removed too."""
    yield
    remove_helpers_using(docker_client, resources.volumes, [str(tmp_path)])


# --- usage and config errors: exit 2 ---------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        ["volume", "backup", "somevolume", "--compress", "bogus"],
        ["volume", "backup", "somevolume", "--transfer", "bogus"],
        ["volume", "backup"],
        ["volume", "restore", "somevolume", "--no-such-option"],
        ["volume", "nosuchcommand"],
    ],
    ids=["bad-compress", "bad-transfer", "missing-source", "unknown-option", "unknown-command"],
)
def test_usage_error_exits_2_without_traceback(arguments):
    result = run_opskit(*arguments)

    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_usage_error_names_the_bad_value():
    result = run_opskit("volume", "backup", "somevolume", "--compress", "bogus")

    assert result.returncode == 2, describe(result)
    assert "--compress" in result.stderr and "bogus" in result.stderr


def test_invalid_config_file_is_one_line_with_exit_2(tmp_path):
    config = tmp_path / "opskit.yaml"
    config.write_text("helper_image: busybox:stable\nno_such_key: 1\n")

    result = run_opskit("volume", "list", "--from", str(tmp_path), "--config", str(config))

    assert_failed_with_one_line(result, str(config), "at 'no_such_key'", exit_code=2)


# --- engine, source and helper image ----------------------------------------------------------


def test_backup_with_engine_unreachable(tmp_path):
    store = tmp_path / "backups"

    result = run_opskit(
        "volume", "backup", "somevolume", "--to", str(store),
        env={"DOCKER_HOST": "tcp://127.0.0.1:1"},
    )  # fmt: skip

    assert_failed_with_one_line(result, "engine", "tcp://127.0.0.1:1")
    assert files_in(store) == []


def test_restore_with_engine_unreachable(tmp_path):
    result = run_opskit(
        "volume", "restore", "somevolume", "--from", str(tmp_path),
        env={"DOCKER_HOST": "tcp://127.0.0.1:1"},
    )  # fmt: skip

    assert_failed_with_one_line(result, "engine", "tcp://127.0.0.1:1")
    assert files_in(tmp_path) == []


def test_backup_of_a_missing_volume(docker_client, unique_name, tmp_path):
    missing = f"{unique_name}-missing"
    store = tmp_path / "backups"

    result = run_opskit("volume", "backup", missing, "--to", str(store))

    assert_failed_with_one_line(result, missing, "does not exist")
    assert files_in(store) == []
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(missing)  # not created by the failed backup


def test_backup_of_a_missing_path(tmp_path):
    missing = tmp_path / "no" / "such dir"
    store = tmp_path / "backups"

    result = run_opskit("volume", "backup", str(missing), "--to", str(store))

    assert_failed_with_one_line(result, str(missing), "does not exist")
    assert files_in(store) == []
    assert not missing.exists()


def test_restore_of_a_missing_backup_id(docker_client, text_volume, tmp_path, old_target):
    store = tmp_path / "backups"
    backup(text_volume, store)
    target, old_tree = old_target

    result = run_opskit(
        "volume", "restore", text_volume, "--from", str(store), "--into", target,
        "--force", "--backup", "no-such-backup-id",
    )  # fmt: skip

    assert_failed_with_one_line(result, "no-such-backup-id")
    assert_store_is_whole(store, 1)
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "target")


def test_restore_from_a_store_without_backups_of_the_source(tmp_path, unique_name):
    result = run_opskit("volume", "restore", unique_name, "--from", str(tmp_path / "empty"))

    assert_failed_with_one_line(result, unique_name, "no backups")


def test_backup_with_the_helper_image_missing(docker_client, text_volume, tmp_path):
    store = tmp_path / "backups"

    result = run_opskit(
        "volume", "backup", text_volume, "--to", str(store), "--helper-image", "opskit-missing:none"
    )

    assert_failed_with_one_line(result, "opskit-missing:none")
    assert files_in(store) == []
    assert helpers_using(docker_client, text_volume) == []


def test_restore_with_the_helper_image_missing(docker_client, text_volume, tmp_path, old_target):
    store = tmp_path / "backups"
    backup(text_volume, store)
    target, old_tree = old_target

    result = run_opskit(
        "volume", "restore", text_volume, "--from", str(store), "--into", target, "--force",
        "--helper-image", "opskit-missing:none",
    )  # fmt: skip

    assert_failed_with_one_line(result, "opskit-missing:none")
    assert_store_is_whole(store, 1)
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "target")
    assert helpers_using(docker_client, target) == []


# --- target not writable, disk full -----------------------------------------------------------


def test_backup_to_a_read_only_directory(docker_client, text_volume, mount_tmpfs):
    read_only = mount_tmpfs("read-only", "ro,size=1m")

    result = run_opskit("volume", "backup", text_volume, "--to", str(read_only))

    assert_failed_with_one_line(result, "not writable", str(read_only))
    assert files_in(read_only) == []
    assert helpers_using(docker_client, text_volume) == []


def test_backup_below_a_read_only_directory(docker_client, text_volume, mount_tmpfs):
    store = mount_tmpfs("read-only", "ro,size=1m") / "backups"

    result = run_opskit("volume", "backup", text_volume, "--to", str(store))

    assert_failed_with_one_line(result, str(store))
    assert not store.exists()


def test_backup_to_a_path_below_a_regular_file(text_volume, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")

    result = run_opskit("volume", "backup", text_volume, "--to", str(blocker / "backups"))

    assert_failed_with_one_line(result, str(blocker))
    assert blocker.read_text() == "x"


def test_restore_into_a_read_only_host_directory(docker_client, text_volume, mount_tmpfs, tmp_path):
    store = tmp_path / "backups"
    backup(text_volume, store)
    read_only = mount_tmpfs("read-only-target", "ro,size=1m")

    result = run_opskit(
        "volume", "restore", text_volume, "--from", str(store), "--into", str(read_only)
    )

    assert_failed_with_one_line(result, "read-only")
    assert files_in(read_only) == []
    assert_store_is_whole(store, 1)
    assert helpers_using(docker_client, str(read_only)) == []


@pytest.mark.parametrize("transfer", ["fifo", "archive-api"])
def test_backup_to_a_full_disk(transfer, docker_client, resources, unique_name, mount_tmpfs):
    volume = resources.volume(f"{unique_name}-ten-mb")
    trees.populate_random(docker_client, volume, megabytes=10, files=2)
    small = mount_tmpfs("small", "size=2m")

    result = run_opskit(
        "volume", "backup", volume, "--to", str(small), "--transfer", transfer, timeout=20
    )

    assert_failed_with_one_line(result, "disk full")
    assert files_in(small) == [], "a partial archive was left on the full disk"
    assert helpers_using(docker_client, volume) == []


# --- damaged archives: the target keeps its contents ------------------------------------------


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for index in range(middle, middle + 64):
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _append_bytes(path: Path) -> None:
    with path.open("ab") as archive:
        archive.write(b"trailing garbage\n")


def _wrong_sha256(path: Path) -> None:
    metadata_path = path.with_name(path.name.split(".tar")[0] + ".json")
    metadata = json.loads(metadata_path.read_text())
    metadata["sha256"] = "0" * 64
    metadata_path.write_text(json.dumps(metadata))


DAMAGE = {
    "corrupt": (_flip_middle, ("corrupt",)),
    "truncated": (_truncate_half, ("corrupt", "truncated", "checksum")),
    "appended": (_append_bytes, ("corrupt", "checksum")),
    "wrong-sha256": (_wrong_sha256, ("checksum",)),
}


@pytest.mark.parametrize("transfer", ["fifo", "archive-api"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_restore_of_a_damaged_archive_leaves_the_target_unchanged(
    damage, transfer, docker_client, text_volume, old_target, tmp_path
):
    store = tmp_path / "backups"
    record = backup(text_volume, store)
    damage_archive, words = DAMAGE[damage]
    damage_archive(Path(record["location"]))
    target, old_tree = old_target

    result = run_opskit(
        "volume", "restore", text_volume, "--from", str(store), "--into", target, "--force",
        "--transfer", transfer,
    )  # fmt: skip

    error_line = assert_failed_with_one_line(result, record["archive"], notices=SAVED_NOTICE)
    assert any(word in error_line.lower() for word in words), (
        f"the error does not say the archive is {' or '.join(words)}: {error_line}"
    )
    assert "target unchanged" in error_line
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "target")
    # The backup and the pre-restore backup of the target, both whole.
    assert_store_is_whole(store, 2, damaged=record["archive"])
    assert helpers_using(docker_client, target) == []


def test_restore_of_an_uncompressed_archive_with_altered_file_data(
    docker_client, text_volume, old_target, tmp_path
):
    """Tar cannot see damage inside file data: only the sha256 can. It must be checked before
    the old contents are replaced."""
    store = tmp_path / "backups"
    record = backup(text_volume, store, "--compress", "none")
    archive = Path(record["location"])
    data = archive.read_bytes()
    position = data.index(b"line 1500\n")
    archive.write_bytes(data[:position] + b"LINE" + data[position + 4 :])
    target, old_tree = old_target

    result = run_opskit(
        "volume", "restore", text_volume, "--from", str(store), "--into", target, "--force"
    )

    assert_failed_with_one_line(result, "checksum", record["archive"], notices=SAVED_NOTICE)
    trees.assert_same_tree(old_tree, trees.snapshot(docker_client, target), "target")


def test_restore_of_a_damaged_archive_into_an_empty_volume_leaves_it_empty(
    docker_client, resources, unique_name, text_volume, tmp_path
):
    store = tmp_path / "backups"
    record = backup(text_volume, store)
    _flip_middle(Path(record["location"]))
    target = resources.volume(f"{unique_name}-empty")
    empty_tree = trees.snapshot(docker_client, target)

    result = run_opskit("volume", "restore", text_volume, "--from", str(store), "--into", target)

    assert_failed_with_one_line(result, record["archive"])
    trees.assert_same_tree(empty_tree, trees.snapshot(docker_client, target), "empty target")
    assert_store_is_whole(store, 1, damaged=record["archive"])


# --- Ctrl-C and SIGTERM in the middle ---------------------------------------------------------


@pytest.fixture(scope="module")
def big_volume(docker_client: docker.DockerClient):
    """About 300 MB of random data (slow enough through gzip to be interrupted mid-way)."""
    name = f"opskit-test-big-{uuid.uuid4().hex[:10]}"
    docker_client.volumes.create(name)
    try:
        trees.populate_random(docker_client, name, megabytes=300, files=3)
        yield name
    finally:
        remove_helpers_using(docker_client, [name], [])
        docker_client.volumes.get(name).remove(force=True)


def _start_opskit(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        opskit_command(*args),
        cwd=REPOSITORY,
        env=opskit_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _bytes_below(directory: Path, pattern: str) -> int:
    total = 0
    for path in directory.glob(pattern) if directory.is_dir() else []:
        try:
            if path.is_dir():
                total += sum(inner.lstat().st_size for inner in path.rglob("*"))
            else:
                total += path.lstat().st_size
        except FileNotFoundError:
            continue
    return total


def _interrupt_when_written(
    process: subprocess.Popen[str],
    directory: Path,
    pattern: str,
    signal_number: int,
    while_running: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Wait until `pattern` below `directory` holds 8 MiB (the data is moving), call
    `while_running`, send the signal, and return the finished process."""
    deadline = time.monotonic() + 120
    while _bytes_below(directory, pattern) < 8 << 20:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            stdout, stderr = process.communicate()
            pytest.fail(f"opskit ended (or hung) before it could be interrupted:\n{stderr}")
        time.sleep(0.005)
    try:
        if while_running is not None:
            while_running()
    finally:
        process.send_signal(signal_number)
    try:
        stdout, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"opskit hung: still running 20 s after the signal, killed\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _assert_interrupted_cleanly(result: subprocess.CompletedProcess[str], name: str) -> None:
    assert result.returncode != 0, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and name in lines[-1], describe(result)


@pytest.mark.parametrize(
    ("transfer", "signal_number"),
    [("fifo", signal.SIGINT), ("fifo", signal.SIGTERM), ("archive-api", signal.SIGINT)],
    ids=["fifo-SIGINT", "fifo-SIGTERM", "archive-api-SIGINT"],
)
def test_interrupted_backup_leaves_nothing(
    transfer, signal_number, docker_client, big_volume, tmp_path
):
    store = tmp_path / "backups"
    process = _start_opskit(
        "volume", "backup", big_volume, "--to", str(store), "--compress", "gzip",
        "--transfer", transfer, "--json",
    )  # fmt: skip

    helpers_seen: list[dict] = []

    def inspect_helper() -> None:
        for container in docker_client.containers.list(
            filters={"label": HELPER_LABEL}, ignore_removed=True
        ):
            mounts = container.attrs["Mounts"]
            if any(mount.get("Name") == big_volume for mount in mounts):
                helpers_seen.append(container.attrs)

    result = _interrupt_when_written(
        process, store, ".opskit-partial-*", signal_number, while_running=inspect_helper
    )

    _assert_interrupted_cleanly(result, signal.Signals(signal_number).name)
    # The backup ran in one helper container that mounted the volume read-only.
    assert len(helpers_seen) == 1, helpers_seen
    [data_mount] = [m for m in helpers_seen[0]["Mounts"] if m.get("Name") == big_volume]
    assert data_mount["RW"] is False, data_mount
    assert files_in(store) == [], "a partial archive or metadata file was left"
    assert list_backups(store) == []
    assert helpers_using(docker_client, big_volume) == []


def test_interrupted_backup_starts_the_stopped_container_again(
    docker_client, resources, big_volume, tmp_path
):
    user = resources.container(command=STOPPABLE_COMMAND, volumes={big_volume: {"bind": "/data"}})
    _, started_before = started_at(docker_client, user.id)
    store = tmp_path / "backups"
    process = _start_opskit(
        "volume", "backup", big_volume, "--to", str(store), "--compress", "gzip",
        "--stop-containers", "--json",
    )  # fmt: skip

    result = _interrupt_when_written(process, store, ".opskit-partial-*", signal.SIGINT)

    _assert_interrupted_cleanly(result, "SIGINT")
    running, started_after = started_at(docker_client, user.id)
    assert running, "the container stopped for the backup was not started again"
    assert started_after != started_before
    assert files_in(store) == []
    assert helpers_using(docker_client, big_volume) == []


def test_interrupted_restore_leaves_the_new_target_empty(
    docker_client, resources, unique_name, big_volume, tmp_path
):
    store = tmp_path / "backups"
    backup(big_volume, store)
    target = resources.volume(f"{unique_name}-target")
    empty_tree = trees.snapshot(docker_client, target)
    process = _start_opskit(
        "volume", "restore", big_volume, "--from", str(store), "--into", target, "--json"
    )

    result = _interrupt_when_written(
        process, volume_mountpoint(docker_client, target), ".opskit-restore-*", signal.SIGINT
    )

    _assert_interrupted_cleanly(result, "SIGINT")
    trees.assert_same_tree(empty_tree, trees.snapshot(docker_client, target), "target")
    assert_store_is_whole(store, 1)
    assert helpers_using(docker_client, target) == []

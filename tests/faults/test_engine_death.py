"""Engine death and restart (issue 12): a second dockerd of this module's own (second_engine.py,
never the main engine), SIGKILLed mid-backup, mid-restore and mid-verify at points chosen by
events (bytes in the store's partial file, the restore's journal and staging directory, the
drill's scratch volume filling), then restarted.

Two deaths: the whole engine (dockerd, containerd, shims and the containers' processes: the
helper's tar stops mid-stream), and dockerd alone (its containerd dies with it; the helper runs
on until the restarted engine kills it).

Each row checks issue 12's promises: opskit exits 1 within EXIT_SECONDS with one `error:` line
saying the engine was lost, and no traceback; no partial backup is listed and no partial file
stays in the store; after the restart, the very next opskit command removes the helper, lock
and scratch leftovers (which the run's last words named); the target is as it was. An engine
that stays down gets one line naming its address."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from opskit.engine.orphans import LOCK_LABEL, SCRATCH_LABEL
from opskit.volume_ops.journal import JOURNAL_NAME
from tests.faults.second_engine import SecondEngine, second_engine  # noqa: F401
from tests.integration import trees
from tests.integration.opskit_cli import (
    HELPER_LABEL,
    bytes_below,
    describe,
    finish,
    run_opskit,
    start_opskit,
)

pytestmark = pytest.mark.integration

MiB = 1 << 20
# 64 MiB of random data: zstd cannot shrink it, so each operation moves 64 MiB, about a second.
BIG_FILES = 4
BIG_FILE_BYTES = 16 * MiB
STRIKE_BYTES = 8 * MiB
# From the kill to opskit's exit, SIGKILL and the reaping of the engine's processes included.
EXIT_SECONDS = 30
KILLS = {"whole-engine": True, "dockerd-alone": False}
# RESTART_NOTE: after a dockerd-alone death, a restarted engine stops the surviving helper with
# SIGTERM, which its `sleep` (PID 1) ignores, and kills it only after the 10 s stop timeout.
LOST = "lost the Docker engine"
# Clean-up steps that fail because the engine is gone log at debug level only
# (engine/client.py cleanup_failed): the one `error:` line is all a user sees.
NAMED_CONTAINER = re.compile(r"\bcontainer=([0-9a-f]{12})\b")
NAMED_VOLUME = re.compile(r"\bvolume=(opskit-verify-\S+)")


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_volume(second_engine: SecondEngine) -> str:  # noqa: F811
    """A volume of 64 MiB of random data on the second engine, written on its disk directly."""
    name = f"opskit-e2-big-{uuid.uuid4().hex[:8]}"
    volume = second_engine.client.volumes.create(name)
    mountpoint = Path(volume.attrs["Mountpoint"])
    for index in range(BIG_FILES):
        (mountpoint / f"random-{index}.bin").write_bytes(os.urandom(BIG_FILE_BYTES))
    (mountpoint / "README").write_text("big\n")
    return name


@pytest.fixture(scope="module")
def big_backup(second_engine: SecondEngine, big_volume: str, tmp_path_factory) -> Path:  # noqa: F811
    """A store holding one backup of the big volume; returns the store's directory."""
    store = tmp_path_factory.mktemp("engine-death") / "big-store"
    result = run_opskit(*backup_args(big_volume, store), env=on(second_engine))
    assert result.returncode == 0, describe(result)
    return store


@pytest.fixture
def engine(second_engine: SecondEngine, big_volume: str):  # noqa: F811
    """The second engine, up; afterwards up again, with everything but the big volume removed
    (it is this module's own engine: nothing else uses it)."""
    second_engine.ensure_up()
    yield second_engine
    second_engine.ensure_up()
    client = second_engine.client
    for summary in client.api.containers(all=True):
        client.api.remove_container(summary["Id"], force=True)
    for volume in client.api.volumes().get("Volumes") or []:
        if volume["Name"] != big_volume:
            client.api.remove_volume(volume["Name"], force=True)


@pytest.fixture
def store(big_backup: Path, tmp_path: Path) -> Path:
    """A store of this test's own with a copy of the big volume's backup (not its index)."""
    copy = tmp_path / "store"
    copy.mkdir(mode=0o700)
    for path in big_backup.iterdir():
        if path.is_file():
            shutil.copy2(path, copy / path.name)
    return copy


# --- helpers ----------------------------------------------------------------------------------


def on(engine: SecondEngine) -> dict[str, str]:
    return {"DOCKER_HOST": engine.address}


def backup_args(volume: str, store: Path) -> list[str]:
    return ["volume", "backup", volume, "--to", str(store), "--json"]


def kill_engine_when(
    engine: SecondEngine,
    process: subprocess.Popen[str],
    event: Callable[[], bool],
    kill: str,
    what: str,
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Poll `event` every 2 ms; when it happens, kill the engine (`kill`: a key of KILLS).
    Return opskit's finished run and the seconds from the kill to its exit. Fail if opskit
    ended first: the fault was never injected, so nothing was tested."""
    deadline = time.monotonic() + 120
    while not event():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            result = finish(process)
            pytest.fail(f"opskit ended (or hung) before {what}:\n{describe(result)}")
        time.sleep(0.002)
    struck = time.monotonic()
    engine.kill(containers_too=KILLS[kill])
    result = finish(process, timeout=EXIT_SECONDS * 2)
    seconds = time.monotonic() - struck
    if not KILLS[kill]:
        # The helper outlived dockerd (that is this death's point). Now that opskit has given
        # up, kill it too: the restarted engine would stop it only after 10 s (RESTART_NOTE).
        assert engine.processes(), "no container outlived dockerd: the death was not tested"
        engine.kill_leftovers()
    return result, seconds


def assert_engine_lost(
    result: subprocess.CompletedProcess[str], seconds: float, *words: str, notices=()
) -> tuple[set[str], set[str]]:
    """opskit said the engine was lost: exit 1 within EXIT_SECONDS, no traceback, nothing on
    stdout, and one last `error:` line containing LOST and `words`. Other stderr lines may only
    be `notices` (prefixes): no log records. Return the (12-digit) container ids and the
    volume names the notices say were left behind."""
    assert result.returncode == 1, describe(result)
    assert seconds < EXIT_SECONDS, f"opskit took {seconds:.1f} s to give up\n{describe(result)}"
    assert "Traceback" not in result.stderr + result.stdout, describe(result)
    assert not result.stdout.strip(), describe(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), describe(result)
    for word in (LOST, *words):
        assert word in lines[-1], f"{word!r} not in the error line\n{describe(result)}"
    containers: set[str] = set()
    volumes: set[str] = set()
    for line in lines[:-1]:
        if notices and line.startswith(notices):
            continue
        pytest.fail(f"unexpected line {line!r}\n{describe(result)}")
        containers.update(NAMED_CONTAINER.findall(line))
        volumes.update(NAMED_VOLUME.findall(line))
    return containers, volumes


def leftovers(engine: SecondEngine) -> tuple[set[str], set[str]]:
    """opskit's helper and lock containers (12-digit ids) and scratch volumes on the engine."""
    api = engine.client.api
    containers = {
        summary["Id"][:12]
        for label in (HELPER_LABEL, LOCK_LABEL)
        for summary in api.containers(all=True, filters={"label": label})
    }
    answer = api.volumes(filters={"label": SCRATCH_LABEL}) or {}
    return containers, {volume["Name"] for volume in answer.get("Volumes") or []}


def assert_leftovers_named(
    engine: SecondEngine, named: tuple[set[str], set[str]]
) -> tuple[set[str], set[str]]:
    """After the restart, before any opskit command: something is left (else the next
    command's clean-up is not tested), and if opskit's last words named what it left, they
    named exactly that. Return the leftovers."""
    found = leftovers(engine)
    assert found[0], "a killed run left no helper or lock: the next command was not tested"
    if named != (set(), set()):
        assert found == named, f"left on the engine {found}, named by opskit {named}"
    return found


def assert_nothing_left(engine: SecondEngine, result: subprocess.CompletedProcess[str]) -> None:
    assert leftovers(engine) == (set(), set()), f"left after the next command\n{describe(result)}"


def store_files(store: Path) -> list[str]:
    """The store's archive and metadata files, partial (hidden) ones included; not the index."""
    return sorted(
        str(path.relative_to(store))
        for path in store.rglob("*")
        if path.is_file() and path.parent.name != "index"
    )


def records_on_disk(store: Path) -> dict[str, dict]:
    """The metadata files at the store's root, read directly: backup id -> record."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(store.glob("*.json"))}


def listed(store: Path) -> list[dict]:
    """The records `volume list --from STORE --json` shows."""
    result = run_opskit("volume", "list", "--from", str(store), "--json")
    assert result.returncode == 0, describe(result)
    return json.loads(result.stdout)


def scratch_staging_bytes(engine: SecondEngine) -> int:
    """Bytes in the staging directories of verify scratch volumes (on the engine's disk)."""
    volumes = engine.root / "data" / "volumes"
    return sum(
        bytes_below(directory / "_data", ".opskit-restore-*")
        for directory in volumes.glob("opskit-verify-*")
    )


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kill", KILLS)
def test_engine_killed_mid_backup(engine, big_volume, tmp_path, kill):
    """Engine killed while the archive streams into the store (partial file past 8 MiB): opskit
    says the engine was lost; no backup is listed and no partial file stays; after the restart,
    a backup of another volume removes the killed run's helper and lock."""
    store = tmp_path / "store"
    process = start_opskit(*backup_args(big_volume, store), env=on(engine))
    partial = ".opskit-partial-*"
    result, seconds = kill_engine_when(
        engine, process, lambda: bytes_below(store, partial) >= STRIKE_BYTES, kill,
        f"{STRIKE_BYTES} bytes were in the store",
    )  # fmt: skip
    named = assert_engine_lost(result, seconds)
    assert store_files(store) == [], "a killed backup left files in the store"
    assert listed(store) == []

    engine.restart()
    assert_leftovers_named(engine, named)
    other = engine.client.volumes.create(f"opskit-e2-other-{uuid.uuid4().hex[:8]}").name
    (Path(engine.client.volumes.get(other).attrs["Mountpoint"]) / "note").write_text("other\n")
    after = run_opskit(*backup_args(other, store), env=on(engine))
    assert after.returncode == 0, describe(after)
    assert_nothing_left(engine, after)
    record = json.loads(after.stdout)
    assert list(records_on_disk(store)) == [record["id"]] and record["source"] == other
    assert store_files(store) == sorted([f"{record['id']}.json", record["archive"]])


@pytest.mark.parametrize("kill", KILLS)
def test_engine_killed_mid_restore(engine, store, big_volume, kill):
    """Engine killed while a --force restore unpacks (journal written, staging past 8 MiB):
    opskit says the engine was lost, that the target is unchanged, names the staging directory
    and the safety backup; after the restart, `volume recover` removes the staging directory,
    the helper and the lock, and the target is exactly as it was."""
    client = engine.client
    (original,) = records_on_disk(store)
    target = client.volumes.create(f"opskit-e2-target-{uuid.uuid4().hex[:8]}").name
    trees.populate_tricky_tree(client, target)
    before = trees.snapshot(client, target)
    mountpoint = Path(client.volumes.get(target).attrs["Mountpoint"])
    restore = ["volume", "restore", big_volume, "--from", str(store), "--into", target]
    process = start_opskit(*restore, "--force", "--json", env=on(engine))
    result, seconds = kill_engine_when(
        engine, process,
        lambda: (mountpoint / JOURNAL_NAME).exists()
        and bytes_below(mountpoint, ".opskit-restore-*") >= STRIKE_BYTES,
        kill, f"the restore had unpacked {STRIKE_BYTES} bytes",
    )  # fmt: skip
    named = assert_engine_lost(
        result, seconds, f"volume {target} unchanged", notices=("saved the current contents",)
    )
    error = result.stderr.strip().splitlines()[-1]
    staging = sorted(path.name for path in mountpoint.glob(".opskit-restore-*"))
    assert len(staging) == 1 and staging[0] in error, describe(result)
    safety = re.search(r"also in backup (\S+?)\)", error)
    assert safety, describe(result)
    assert sorted(record["id"] for record in listed(store)) == sorted([original, safety[1]])
    assert not [name for name in store_files(store) if name.startswith(".")], store_files(store)

    engine.restart()
    assert_leftovers_named(engine, named)
    after = run_opskit("volume", "recover", target, "--json", env=on(engine))
    assert after.returncode == 0, describe(after)
    assert "removed the staging directory" in after.stdout, describe(after)
    assert_nothing_left(engine, after)
    trees.assert_same_tree(before, trees.snapshot(client, target), "the target before and after")


def test_engine_killed_mid_verify(engine, store):
    """Whole engine killed while the drill restores into its scratch volume (staging past
    8 MiB): opskit says the engine was lost, and records no verdict on the backup; after the
    restart, the same verify removes the scratch volume, helper and lock left behind, and
    passes. (The drill restores through the restore path, whose dockerd-alone death
    test_engine_killed_mid_restore covers.)"""
    verify = ["volume", "verify", "--from", str(store), "--json"]
    (backup_id,) = records_on_disk(store)
    process = start_opskit(*verify, env=on(engine))
    result, seconds = kill_engine_when(
        engine, process, lambda: scratch_staging_bytes(engine) >= STRIKE_BYTES, "whole-engine",
        f"the drill had unpacked {STRIKE_BYTES} bytes",
    )  # fmt: skip
    named = assert_engine_lost(result, seconds, notices=("verifying backup",))
    record = records_on_disk(store)[backup_id]
    assert record.get("verified_at") is None and record.get("verified_ok") is None, record

    engine.restart()
    found = assert_leftovers_named(engine, named)
    assert found[1], "the killed drill left no scratch volume: its removal was not tested"
    after = run_opskit(*verify, env=on(engine))
    assert after.returncode == 0, describe(after)
    assert_nothing_left(engine, after)
    (verification,) = json.loads(after.stdout)["backups"]
    assert verification["backup_id"] == backup_id and verification["ok"] is True, after.stdout
    assert records_on_disk(store)[backup_id]["verified_ok"] is True


def test_engine_down_is_one_line_naming_the_address(engine, store, big_volume):
    """With the engine killed and not restarted, backup, restore, verify and recover each exit
    1 with exactly one line: no engine answers at the address DOCKER_HOST gave."""
    files = store_files(store)
    engine.kill()
    commands = {
        "backup": backup_args(big_volume, store),
        "restore": ["volume", "restore", big_volume, "--from", str(store), "--into", "new-one"],
        "verify": ["volume", "verify", "--from", str(store)],
        "recover": ["volume", "recover", big_volume],
    }
    started = {name: start_opskit(*args, env=on(engine)) for name, args in commands.items()}
    for name, process in started.items():
        result = finish(process, timeout=60)
        assert result.returncode == 1, f"{name}: {describe(result)}"
        assert "Traceback" not in result.stderr, f"{name}: {describe(result)}"
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        expected = f"error: no Docker engine answers at {engine.address}: "
        assert len(lines) == 1 and lines[0].startswith(expected), f"{name}: {describe(result)}"
    assert store_files(store) == files

"""Issue 8's hostile input and store, as a user meets them through the CLI on the real engine:
a typo of a target's name, damaged and planted metadata, a store whose archive is a symlink,
escape codes in names, a missing store, leftovers of killed runs, private directories, huge,
binary and alias-bomb configs and compose files, and signals during start-up."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration import trees
from tests.integration.opskit_cli import (
    REPOSITORY,
    assert_failed_with_one_line,
    backup,
    describe,
    list_backups,
    opskit_command,
    opskit_environment,
    restore,
    run_opskit,
    wait_for_next_second,
)

pytestmark = pytest.mark.integration

FILES = {"db.dat": "precious\n", "conf/app.ini": "[app]\nname = demo\n"}
# Enough address space for opskit itself (it needs about 500 MB), far too little for an
# unbounded read of /dev/zero or an expanded alias bomb: they must fail, not take the machine.
MEMORY_LIMIT = 1 << 30


def run_limited(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run opskit like `run_opskit`, in at most `MEMORY_LIMIT` bytes of address space."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    try:
        return subprocess.run(
            opskit_command(*args),
            cwd=REPOSITORY,
            env=opskit_environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit_memory,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`opskit {' '.join(args)}` still ran after {timeout:.0f} s") from None


@pytest.fixture
def source_volume(docker_client, resources, unique_name) -> str:
    volume = resources.volume(f"{unique_name}-src")
    trees.populate_files(docker_client, volume, FILES)
    return volume


def read_file(docker_client, volume: str, path: str) -> str:
    return trees.run_in_tree(docker_client, volume, f"cat {path}", read_only=True).decode()


def metadata_path(store: Path, record: dict) -> Path:
    return store / f"{record['id']}.json"


# -- point 7: a typo of a target's name --------------------------------------------------------


def test_backup_to_a_typo_of_a_target_name_is_a_usage_error(source_volume, tmp_path):
    name = f"offsite{uuid.uuid4().hex[:6]}"
    typo = name[:-1]
    config = tmp_path / "opskit.yaml"
    config.write_text(f"targets:\n  {name}:\n    url: {tmp_path / 'offsite-store'}\n")
    stray = REPOSITORY / typo
    try:
        result = run_opskit(
            "volume", "backup", source_volume, "--to", typo, "--config", str(config)
        )

        error = assert_failed_with_one_line(result, f"unknown target '{typo}'", exit_code=2)
        assert f"configured targets: {name}" in error
        assert f"./{typo}" in error
        assert not stray.exists(), "the typo was written as a local folder"
    finally:
        if stray.is_dir():  # today's main writes it: leave no trace in the checkout
            shutil.rmtree(stray)

    # the right name still works, and lands in the target's directory
    record = backup(source_volume, name, "--config", str(config))
    assert (tmp_path / "offsite-store" / record["archive"]).is_file()


# -- point 8: damaged and planted metadata ----------------------------------------------------


@pytest.fixture
def two_backups(source_volume, tmp_path) -> tuple[Path, dict, dict]:
    """A store with two backups of `source_volume`: (store, older, newer)."""
    store = tmp_path / "store"
    older = backup(source_volume, store)
    wait_for_next_second()
    newer = backup(source_volume, store)
    return store, older, newer


def test_restore_latest_stops_when_the_newest_metadata_is_damaged(
    docker_client, resources, source_volume, two_backups, unique_name
):
    store, older, newer = two_backups
    metadata_path(store, newer).write_text("{}")
    target = f"{unique_name}-into"
    resources.track_volume(target)

    result = run_opskit("volume", "restore", source_volume, "--from", str(store), "--into", target)

    error = assert_failed_with_one_line(
        result, f"{newer['id']}.json", "pass --backup ID to restore another", exit_code=1
    )
    assert "__init__" not in error and "positional" not in error, error
    assert not docker_client.volumes.list(filters={"name": target}), "a target was created"

    # naming a backup still restores it, although another metadata file is damaged
    restored = restore(source_volume, store, "--into", target, "--backup", older["id"])
    assert restored["backup"]["id"] == older["id"]
    assert read_file(docker_client, target, "db.dat") == "precious\n"


def test_list_passes_over_a_damaged_metadata_file(source_volume, two_backups):
    store, older, newer = two_backups
    metadata_path(store, newer).write_text("{}")

    listed = list_backups(store)

    assert [record["id"] for record in listed] == [older["id"]]


def test_list_reports_damaged_metadata_files_as_a_notice(source_volume, two_backups):
    """Needs the CLI to render `Listing.problems` (opskit/cli/volume.py)."""
    store, older, newer = two_backups
    metadata_path(store, newer).write_text("{}")

    result = run_opskit("volume", "list", "--from", str(store))

    assert result.returncode == 0, describe(result)
    assert older["id"] in result.stdout
    assert f"{newer['id']}.json" in result.stderr, describe(result)
    assert "Traceback" not in result.stderr and "__init__" not in result.stderr


def test_a_planted_metadata_file_does_not_shadow_a_backup(
    docker_client, resources, source_volume, two_backups, unique_name
):
    store, older, newer = two_backups
    planted = dict(newer, sha256="0" * 64, size=1, tags=["planted"])
    (store / "aaa-planted.json").write_text(json.dumps(planted))
    target = resources.track_volume(f"{unique_name}-into")

    restored = restore(source_volume, store, "--into", target, "--backup", newer["id"])

    assert restored["backup"]["sha256"] == newer["sha256"]
    assert read_file(docker_client, target, "db.dat") == "precious\n"
    assert [(record["id"], record["tags"]) for record in list_backups(store)] == [
        (older["id"], older["tags"]),
        (newer["id"], newer["tags"]),
    ]


# -- the local store: symlinks, escape codes, a missing directory, leftovers, modes ------------


def test_restore_refuses_an_archive_that_is_a_symlink_to_a_device(
    docker_client, resources, source_volume, tmp_path, unique_name
):
    store = tmp_path / "store"
    record = backup(source_volume, store)
    archive = store / record["archive"]
    archive.unlink()
    archive.symlink_to("/dev/urandom")
    target = resources.track_volume(f"{unique_name}-into")

    started = time.monotonic()
    result = run_opskit(
        "volume", "restore", source_volume, "--from", str(store), "--into", target, timeout=90
    )

    assert_failed_with_one_line(result, "not a regular file inside the store", exit_code=1)
    assert time.monotonic() - started < 60
    assert not docker_client.volumes.list(filters={"name": target}), "a target was created"


def test_restore_refuses_an_archive_that_links_out_of_the_store(
    docker_client, resources, source_volume, tmp_path, unique_name
):
    store = tmp_path / "store"
    record = backup(source_volume, store)
    outside = tmp_path / "outside.tar.zst"
    (store / record["archive"]).rename(outside)
    (store / record["archive"]).symlink_to(outside)  # the very archive, but not in the store
    target = resources.track_volume(f"{unique_name}-into")

    result = run_opskit("volume", "restore", source_volume, "--from", str(store), "--into", target)

    assert_failed_with_one_line(result, "not a regular file inside the store", exit_code=1)


def test_escape_codes_in_metadata_never_reach_the_terminal(source_volume, two_backups):
    store, older, newer = two_backups
    hostile = dict(newer, id="pgdata\x1b[2J\x1b]0;owned\x07")
    (store / "evil\x1b[31m-20261127T000000Z-abcd.json").write_text(json.dumps(hostile))

    for args in (
        ("volume", "list", "--from", str(store)),
        ("volume", "list", "--from", str(store), "--json"),
    ):
        result = run_opskit(*args)
        assert result.returncode == 0, describe(result)
        assert "\x1b" not in result.stdout + result.stderr, describe(result)

    result = run_opskit(
        "volume",
        "restore",
        source_volume,
        "--from",
        str(store),
        "--into",
        "x",
        "--backup",
        hostile["id"],
    )
    assert_failed_with_one_line(result, "no backup", exit_code=1)
    assert "\x1b" not in result.stderr


def test_escape_codes_in_a_valid_records_source_are_escaped_in_the_table(source_volume, tmp_path):
    """Needs the CLI to show table cells through `render.printable` (opskit/cli/volume.py)."""
    store = tmp_path / "store"
    record = backup(source_volume, store)
    record["source"] = "pg\x1b[2Jdata"
    (store / f"{record['id']}.json").write_text(json.dumps(record))

    result = run_opskit("volume", "list", "--from", str(store))

    assert result.returncode == 0, describe(result)
    assert "\x1b" not in result.stdout + result.stderr, describe(result)
    assert "\\x1b[2J" in result.stdout


def test_list_from_a_missing_directory_says_so(tmp_path):
    missing = tmp_path / "no-such-store"

    result = run_opskit("volume", "list", "--from", str(missing))

    assert_failed_with_one_line(result, f"backup directory {missing} does not exist", exit_code=1)
    assert not missing.exists()


def test_list_removes_partial_files_of_killed_runs(source_volume, tmp_path):
    store = tmp_path / "store"
    record = backup(source_volume, store)
    finished = subprocess.Popen(["true"])
    finished.wait()  # a pid that no longer runs: the owner of the partial file was killed
    host = run_python("from opskit.process_owner import owner_token; print(owner_token())")
    dead_owner = f"{host.split('+')[0]}+{finished.pid}+1"
    partial = store / f".opskit-partial-{dead_owner}+0000-{record['id']}.tar.zst"
    partial.write_bytes(b"x" * 4096)

    list_backups(store)

    assert not partial.exists(), "list left the partial file of a killed run"
    assert (store / record["archive"]).is_file()


def run_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_parent_directories_of_a_new_store_are_private_under_umask_000(source_volume, tmp_path):
    store = tmp_path / "a" / "b" / "store"
    command = [
        "sh",
        "-c",
        'umask 000; exec "$@"',
        "sh",
        *opskit_command("volume", "backup", source_volume, "--to", str(store), "--json"),
    ]
    result = subprocess.run(
        command, cwd=REPOSITORY, env=opskit_environment(), capture_output=True, text=True
    )

    assert result.returncode == 0, describe(result)
    for directory in (tmp_path / "a", tmp_path / "a" / "b", store):
        mode = directory.stat().st_mode & 0o777
        assert mode == 0o700, f"{directory} has mode {mode:04o}"


# -- bounded reads: config and compose files --------------------------------------------------


def alias_bomb(levels: int = 12) -> str:
    """The 'billion laughs': each level lists the previous one ten times (10^13 strings)."""
    lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"x{level}: &x{level} [" + ", ".join([f"*x{level - 1}"] * 10) + "]")
    return "".join(f"  {line}\n" for line in lines)


def test_config_from_dev_zero_fails_fast_in_small_memory(tmp_path):
    result = run_limited("volume", "list", "--from", str(tmp_path), "--config", "/dev/zero")

    assert_failed_with_one_line(result, "/dev/zero", "larger than", exit_code=2)


def test_a_binary_config_is_a_config_error(tmp_path):
    config = tmp_path / "opskit.yaml"
    config.write_bytes(os.urandom(4096).replace(b"\n", b" ") + b"\xff")

    result = run_opskit("volume", "list", "--from", str(tmp_path), "--config", str(config))

    error = assert_failed_with_one_line(result, "not UTF-8", exit_code=2)
    assert "internal error" not in error


def test_an_alias_bomb_in_the_config_fails_fast_in_small_memory(tmp_path):
    """Defence in depth: no config field is walked deeply today, but none may ever be."""
    config = tmp_path / "opskit.yaml"
    config.write_text("helper_image: busybox:stable\nx-bomb:\n" + alias_bomb())

    started = time.monotonic()
    result = run_limited("volume", "list", "--from", str(tmp_path), "--config", str(config))

    assert_failed_with_one_line(result, "aliases", exit_code=2)
    assert time.monotonic() - started < 30


def test_an_alias_bomb_in_a_compose_file_fails_fast_in_small_memory(tmp_path):
    compose = tmp_path / "compose.yaml"
    # The audit reads every entry of `ports`: today's main expanded all 10^13 of them.
    compose.write_text("x-bomb:\n" + alias_bomb() + "services:\n  web:\n    ports: *x12\n")

    started = time.monotonic()
    result = run_limited("ports", "audit", "-f", str(compose))

    assert_failed_with_one_line(result, "compose.yaml", "aliases", exit_code=2)
    assert time.monotonic() - started < 30


def test_a_huge_compose_file_is_refused_with_one_line(tmp_path):
    compose = tmp_path / "compose.yaml"
    with compose.open("wb") as stream:
        stream.write(b"services: {}\n")
        stream.write(b"#" * (64 << 20))

    result = run_limited("ports", "audit", "-f", str(compose))

    assert_failed_with_one_line(result, "compose.yaml", "larger than", exit_code=2)


# -- signals during start-up ------------------------------------------------------------------

CONSOLE_SCRIPT = Path(sys.executable).parent / "opskit"
STARTUP_COMMANDS = {
    "python -m opskit": opskit_command(),
    "console script": [str(CONSOLE_SCRIPT)],
}
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def handlers_installed(pid: int) -> bool:
    """Whether process `pid` catches SIGHUP: opskit's start-up handlers are in place (Python
    itself catches only SIGINT, so SIGHUP tells them apart)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # it has ended already
    if re.search(r"^State:\s+[ZX]", status, re.MULTILINE):
        # It ended, not yet reaped: a zombie catches nothing. A `volume list` of an empty
        # store can finish before a late signal under load.
        return True
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGHUP - 1)))


def assert_ended_quietly(result: subprocess.CompletedProcess[str], signum: int) -> None:
    """No traceback, and one of: exit 128+signum with the one start-up line; exit 130 with the
    one line of a run interrupted later; or the run finished first (exit 0, or the signal's
    default action during the interpreter's own shutdown, after the output)."""
    output = result.stderr + result.stdout
    assert "Traceback" not in output, describe(result)
    lines = result.stderr.strip().splitlines()
    name = signal.Signals(signum).name
    if "during start-up" in result.stderr:
        assert result.returncode == SIGNAL_EXIT[signum], describe(result)
        assert lines == [f"error: interrupted by {name} during start-up"], describe(result)
    elif result.returncode == 130:
        assert len(lines) == 1 and lines[0].startswith(f"error: interrupted by {name}"), describe(
            result
        )
    else:
        assert result.returncode in (0, -signum), describe(result)
        assert "no backups in" in output, describe(result)


def start(command: list[str], store: Path) -> tuple[subprocess.Popen[str], float]:
    process = subprocess.Popen(
        [*command, "volume", "list", "--from", str(store)],
        cwd=REPOSITORY,
        env=opskit_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, time.monotonic()


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("opskit did not end within 60 s of the signal") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("command", STARTUP_COMMANDS, ids=str)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_during_start_up_ends_quietly(command, signum, tmp_path):
    """The signal is sent 0, 20, 50, 100 and 200 ms after opskit's first lines have run, all
    during the imports of typer, docker and pydantic. (Before that, the interpreter itself is
    starting: no program's code has run yet, and the kernel's default action applies.)"""
    for delay in (0, 0.02, 0.05, 0.1, 0.2):
        process, _ = start(STARTUP_COMMANDS[command], tmp_path)
        deadline = time.monotonic() + 10
        while not handlers_installed(process.pid):
            assert time.monotonic() < deadline, "opskit never installed its signal handlers"
            time.sleep(0.001)
        time.sleep(delay)
        process.send_signal(signum)

        assert_ended_quietly(finish(process), signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_at_fixed_moments_after_launch_ends_quietly(signum, tmp_path):
    """100, 200 and 400 ms after `python -m opskit` starts: well after the interpreter's own
    start-up (about 35 ms on a quiet machine), while opskit imports its libraries. On a loaded
    machine the interpreter may still be importing `site` then, where no program's handler can
    run yet (CPython dies with "init_import_site"): the signal then waits for opskit's first
    lines, as in the test above."""
    for delay in (0.1, 0.2, 0.4):
        process, launched = start(opskit_command(), tmp_path)
        time.sleep(max(0.0, launched + delay - time.monotonic()))
        deadline = time.monotonic() + 10
        while not handlers_installed(process.pid):
            assert time.monotonic() < deadline, "opskit never installed its signal handlers"
            time.sleep(0.001)
        process.send_signal(signum)

        assert_ended_quietly(finish(process), signum)

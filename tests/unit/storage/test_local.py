"""The local store never leaves its directory: no symlinks followed, only regular files opened;
its directories are private whatever the umask; partial files of killed runs are removed."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from opskit import errors
from opskit.process_owner import owner_token
from opskit.storage.local import PARTIAL_PREFIX, LocalStorage


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "store")
    storage.write_bytes("backup.json", b"{}")
    return storage


def test_open_refuses_a_symlink_out_of_the_store(store, tmp_path):
    (tmp_path / "secret").write_text("secret")
    (store.root / "planted.tar.zst").symlink_to(tmp_path / "secret")

    for read in (store.open, store.stat, store.read_bytes):
        with pytest.raises(errors.StorageError, match="not a regular file inside the store"):
            read("planted.tar.zst")


def test_open_refuses_a_symlink_to_a_device_at_once(store):
    (store.root / "urandom.tar.zst").symlink_to("/dev/urandom")

    with pytest.raises(errors.StorageError, match="not a regular file"):
        store.open("urandom.tar.zst")


def test_open_of_a_fifo_is_refused_without_waiting_for_a_writer(store):
    os.mkfifo(store.root / "pipe.tar.zst")
    started = time.monotonic()

    with pytest.raises(errors.StorageError, match="not a regular file"):
        store.open("pipe.tar.zst")
    with pytest.raises(errors.StorageError, match="not a regular file"):
        store.stat("pipe.tar.zst")

    assert time.monotonic() - started < 5


def test_open_refuses_a_symlinked_directory_below_the_root(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.json").write_text("{}")
    (store.root / "sub").symlink_to(outside)

    with pytest.raises(errors.StorageError, match="not a regular file inside the store"):
        store.open("sub/x.json")
    with pytest.raises(errors.StorageError):
        store.remove("sub/x.json")
    with pytest.raises(errors.StorageError):
        store.create("sub/new.json")
    assert (outside / "x.json").exists()
    assert not (outside / "new.json").exists()


def test_the_root_itself_may_be_a_symlink(tmp_path):
    real = LocalStorage(tmp_path / "real")
    real.write_bytes("a.json", b"data")
    (tmp_path / "link").symlink_to(tmp_path / "real")

    assert LocalStorage(tmp_path / "link").read_bytes("a.json") == b"data"


def test_open_and_stat_of_a_missing_object_are_not_found(store):
    with pytest.raises(errors.NotFound):
        store.open("missing.json")
    with pytest.raises(errors.NotFound):
        store.stat("nested/missing.json")


def test_open_reads_a_regular_file(store):
    with store.open("backup.json") as stream:
        assert stream.read() == b"{}"
    assert store.stat("backup.json").size == 2


@pytest.mark.parametrize("name", ["a\x1b[2J.json", "a\nb.json", "a\x00b"])
def test_names_with_control_characters_are_refused(store, name):
    with pytest.raises(ValueError, match="invalid object name"):
        store.create(name)


def test_directories_of_a_new_store_are_0700_whatever_the_umask(tmp_path):
    old_umask = os.umask(0)
    try:
        storage = LocalStorage(tmp_path / "a" / "b" / "store")
        storage.check_writable()
        storage.write_bytes("nested/deeper/x.json", b"{}")
    finally:
        os.umask(old_umask)

    for directory in ("a", "a/b", "a/b/store", "a/b/store/nested", "a/b/store/nested/deeper"):
        mode = stat.S_IMODE((tmp_path / directory).stat().st_mode)
        assert mode == 0o700, f"{directory} has mode {mode:04o}"


def test_existing_parent_directories_keep_their_mode(tmp_path):
    (tmp_path / "shared").mkdir(mode=0o755)
    os.chmod(tmp_path / "shared", 0o755)

    LocalStorage(tmp_path / "shared" / "store").check_writable()

    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o755


def test_remove_leftovers_removes_partial_files_of_dead_writers_only(store):
    finished = subprocess.Popen(["true"])
    dead_token = f"{owner_token().split('+')[0]}+{finished.pid}+1"
    finished.wait()
    dead = store.root / f"{PARTIAL_PREFIX}{dead_token}+0000-x.tar.zst"
    live = store.root / f"{PARTIAL_PREFIX}{owner_token()}+0000-y.tar.zst"
    foreign = store.root / f"{PARTIAL_PREFIX}other-host+1+1+0000-z.tar.zst"
    (store.root / "nested").mkdir()
    nested_dead = store.root / "nested" / dead.name
    for path in (dead, live, foreign, nested_dead):
        path.write_bytes(b"partial")

    store.remove_leftovers()

    assert not dead.exists() and not nested_dead.exists()
    assert live.exists() and foreign.exists()
    assert (store.root / "backup.json").exists()


def test_remove_leftovers_of_a_missing_or_read_only_store_is_quiet(tmp_path):
    LocalStorage(tmp_path / "missing").remove_leftovers()
    assert not (tmp_path / "missing").exists()


def test_list_directories_names_the_directories_below_the_root_with_objects(store):
    store.write_bytes("top.json", b"1")
    store.write_bytes("a/one.json", b"1")
    store.write_bytes("a/deeper/two.json", b"2")
    store.write_bytes("b/deeper/three.json", b"3")
    (store.root / "empty").mkdir()

    assert store.list_directories() == ["a", "b"]


def test_list_directories_of_a_missing_root_is_empty(tmp_path):
    assert LocalStorage(tmp_path / "missing").list_directories() == []

"""The target lock's container name and how its holder is described (no engine needed)."""

from __future__ import annotations

import re

import pytest

from opskit.engine.lock import LockHolder, lock_name
from opskit.engine.volumes import DataSource

# What the engine accepts as a container name (daemon/names: RestrictedNameChars).
DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
MAX_NAME_LENGTH = 80

SOURCES = [
    DataSource("volume", "pgdata"),
    DataSource("volume", "my_volume-1.2"),
    DataSource("volume", "a"),
    DataSource("path", "/srv/app/uploads"),
    DataSource("path", "/srv/app data/ünïcødé/日本"),
    DataSource("path", "/srv/$(rm -rf ~);`x`|'\"\n\t\x1b[2J"),
    DataSource("path", "/..."),
    DataSource("path", "/___/---"),
    DataSource("path", "/"),
    DataSource("path", "/" + "deep/" * 500),
]


def test_lock_name_is_the_same_on_every_call():
    assert lock_name(DataSource("volume", "pgdata")) == lock_name(DataSource("volume", "pgdata"))


def test_lock_name_is_the_same_in_every_version_and_process():
    # Runs on other hosts sharing the engine compute it too: a change would let two run at once.
    assert lock_name(DataSource("volume", "pgdata")) == "opskit-lock-pgdata-e11638102266"


def test_lock_name_of_a_path_is_the_same_in_every_version_and_process():
    assert lock_name(DataSource("path", "/srv/app data")) == (
        "opskit-lock-srv_app_data-fe0717adab75"
    )


def test_lock_name_differs_for_a_volume_and_a_path_of_the_same_text():
    assert lock_name(DataSource("volume", "data")) != lock_name(DataSource("path", "data"))


def test_lock_name_differs_for_paths_whose_readable_parts_are_the_same():
    assert lock_name(DataSource("path", "/srv/a b")) != lock_name(DataSource("path", "/srv/a_b"))


def test_lock_name_differs_for_long_paths_that_differ_only_at_the_end():
    common = "/srv/" + "x" * 100

    assert lock_name(DataSource("path", common + "/one")) != lock_name(
        DataSource("path", common + "/two")
    )


def test_lock_name_is_readable():
    assert "pgdata" in lock_name(DataSource("volume", "pgdata"))


@pytest.mark.parametrize("data", SOURCES, ids=repr)
def test_lock_name_has_only_characters_docker_allows(data):
    assert DOCKER_NAME.fullmatch(lock_name(data))


@pytest.mark.parametrize("data", SOURCES, ids=repr)
def test_lock_name_is_bounded_in_length(data):
    assert len(lock_name(data)) <= MAX_NAME_LENGTH


@pytest.mark.parametrize("data", SOURCES, ids=repr)
def test_lock_name_starts_with_the_lock_prefix(data):
    assert lock_name(data).startswith("opskit-lock-")


def test_lock_holder_describe_names_operation_pid_host_and_time():
    holder = LockHolder("c0ffee", "build-1:4242:987654", "restore", "2026-11-22T10:15:00Z")

    assert holder.describe() == "opskit restore (pid 4242 on build-1, since 2026-11-22T10:15:00Z)"


def test_lock_holder_describe_without_an_operation_says_run():
    holder = LockHolder("c0ffee", "build-1:4242:987654", "", "2026-11-22T10:15:00Z")

    assert holder.describe().startswith("opskit run (")


def test_lock_holder_describe_without_an_owner_says_unknown():
    holder = LockHolder("c0ffee", "", "backup", "?")

    assert holder.describe() == "opskit backup (pid ? on ?, since ?)"


def test_lock_holder_describe_with_only_a_host_says_the_pid_is_unknown():
    holder = LockHolder("c0ffee", "build-1", "backup", "?")

    assert holder.describe() == "opskit backup (pid ? on build-1, since ?)"

"""DataSource.parse: what is a volume name and what is a host path."""

from __future__ import annotations

import os

import pytest

from opskit import errors
from opskit.engine.volumes import DataSource


@pytest.mark.parametrize("text", ["pgdata", "my_volume-1.2", "a", "0123abc"])
def test_a_name_without_slash_is_a_volume(text):
    assert DataSource.parse(text) == DataSource("volume", text)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("/srv/app/uploads", "/srv/app/uploads"),
        ("/srv/app/uploads/", "/srv/app/uploads"),
        ("/srv//app/./uploads", "/srv/app/uploads"),
        ("/srv/app data", "/srv/app data"),
    ],
)
def test_an_absolute_path_is_a_normalised_path(text, path):
    assert DataSource.parse(text) == DataSource("path", path)


@pytest.mark.parametrize("text", ["./data", "data/sub", "..", "."])
def test_a_relative_path_is_made_absolute(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert DataSource.parse(text) == DataSource("path", os.path.abspath(tmp_path / text))


def test_a_home_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))

    assert DataSource.parse("~/data") == DataSource("path", str(tmp_path / "data"))


def test_an_empty_name_is_a_usage_error():
    with pytest.raises(errors.UsageError) as raised:
        DataSource.parse("")

    assert raised.value.exit_code == 2


def test_describe_says_what_it_is():
    assert DataSource.parse("pgdata").describe() == "volume pgdata"
    assert DataSource.parse("/srv/x").describe() == "path /srv/x"


def test_the_root_directory_is_refused_as_a_data_path():
    with pytest.raises(errors.UsageError, match="refusing /"):
        DataSource.parse("/")

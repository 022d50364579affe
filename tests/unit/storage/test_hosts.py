"""Host prefixes: how a machine's name becomes its part of a shared target."""

from __future__ import annotations

import socket

import pytest

from opskit import errors
from opskit.repository import index, snapshots
from opskit.storage import hosts


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("web-1", "web-1"),
        ("Web-1.Example.COM", "web-1.example.com"),
        ("db host/../../etc", "db_host_.._.._etc"),
        ("  ..box.. ", "box"),
        ("x" * 100, "x" * hosts.MAX_LENGTH),
        ("münchen-01", "m_nchen-01"),
        ("a\x1b[2Jb", "a_2jb"),
    ],
)
def test_safe_host_name_keeps_letters_digits_dots_dashes_underscores(name, expected):
    assert hosts.safe_host_name(name) == expected


@pytest.mark.parametrize("name", ["Web-1.Example.COM", "db host/..", "x" * 70 + ".", "index"])
def test_safe_host_name_of_a_prefix_is_the_prefix(name):
    prefix = hosts.safe_host_name(name)

    assert hosts.safe_host_name(prefix) == prefix
    assert hosts.is_host_prefix(prefix)


def test_safe_host_name_never_names_a_directory_of_the_store_layout():
    # A target that held one host's backups before host prefixes has these at its root.
    assert set(hosts.LAYOUT_DIRECTORIES) == {
        index.INDEX_NAME.split("/")[0],
        snapshots.PREFIX.rstrip("/"),
    }
    assert hosts.safe_host_name("index") == "index_host"
    assert hosts.safe_host_name("SNAPSHOTS") == "snapshots_host"


@pytest.mark.parametrize("name", ["", "...", "///", " - "])
def test_safe_host_name_of_nothing_is_a_usage_error(name):
    with pytest.raises(errors.UsageError, match="not a host name"):
        hosts.safe_host_name(name)


@pytest.mark.parametrize(
    "name", [".opskit-staging", "index", "snapshots", "Upper", "a b", "", "-x", "x" * 64]
)
def test_is_host_prefix_refuses_names_no_host_gets(name):
    assert not hosts.is_host_prefix(name)


def test_this_host_is_the_name_safe_host_name(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "Build Box.local")

    assert hosts.this_host() == "build_box.local"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket/fleet", "s3://bucket/fleet/web-1"),
        ("s3://bucket/fleet/", "s3://bucket/fleet/web-1"),
        ("s3://bucket", "s3://bucket/web-1"),
        ("/var/backups/opskit", "/var/backups/opskit/web-1"),
        ("/", "/web-1"),
    ],
)
def test_host_url_appends_the_host_prefix(url, expected):
    assert hosts.host_url(url, "web-1") == expected

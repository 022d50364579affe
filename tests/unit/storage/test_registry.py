"""Choosing a store from a location: a bare name must be a configured target; a target with
host prefixes opens one host's part of it."""

from __future__ import annotations

import pytest

from opskit import errors
from opskit.config.load import parse_config
from opskit.config.schema import Config
from opskit.storage import hosts
from opskit.storage.local import LocalStorage
from opskit.storage.registry import fleet_hosts, open_storage, uses_host_prefixes

CONFIG = """\
targets:
  offsite:
    url: /srv/offsite-backups
  archive:
    url: relative-dir
"""


def test_a_typo_of_a_target_name_is_a_usage_error_listing_the_targets():
    with pytest.raises(errors.UsageError) as raised:
        open_storage("offsit", parse_config(CONFIG))

    message = str(raised.value)
    assert "unknown target 'offsit'" in message
    assert "configured targets: archive, offsite" in message
    assert "./offsit" in message
    assert raised.value.exit_code == 2


def test_a_bare_name_without_any_targets_is_a_usage_error():
    with pytest.raises(errors.UsageError, match="no targets are configured.*./backups"):
        open_storage("backups", Config())


@pytest.mark.parametrize("location", ["./backups", "backups/", "/var/backups", ".", "..", "~"])
def test_directories_written_with_a_slash_or_dots_are_local_stores(location):
    assert isinstance(open_storage(location, Config()), LocalStorage)


def test_a_target_name_and_its_url_open_the_target():
    config = parse_config(CONFIG)

    assert open_storage("offsite", config).url == "/srv/offsite-backups"
    assert open_storage("/srv/offsite-backups/", config).url == "/srv/offsite-backups"
    # a target's own url may be a bare relative name: the target names it
    assert open_storage("archive", config).url.endswith("/relative-dir")
    assert open_storage("relative-dir", config).url.endswith("/relative-dir")


def test_an_escape_code_in_a_location_is_not_echoed_raw():
    with pytest.raises(errors.UsageError) as raised:
        open_storage("off\x1b[2Jsit", Config())

    assert "\x1b" not in str(raised.value)


FLEET_CONFIG = """\
targets:
  shared:
    url: {root}
    host_prefix: true
  plain:
    url: {root}
  offsite:
    url: s3://fleet-backups/docker
  offsite-flat:
    url: s3://fleet-backups/docker
    host_prefix: false
"""


@pytest.fixture
def fleet_config(tmp_path):
    return parse_config(FLEET_CONFIG.format(root=tmp_path / "fleet"))


@pytest.fixture
def this_host(monkeypatch):
    monkeypatch.setattr(hosts, "this_host", lambda: "host-b")
    return "host-b"


def test_a_target_with_host_prefixes_opens_this_hosts_part(fleet_config, tmp_path, this_host):
    assert open_storage("shared", fleet_config).url == str(tmp_path / "fleet" / this_host)


def test_a_host_opens_that_hosts_part_made_name_safe(fleet_config, tmp_path, this_host):
    storage = open_storage("shared", fleet_config, host="Host-A.example.com")

    assert storage.url == str(tmp_path / "fleet" / "host-a.example.com")


def test_a_local_target_has_no_host_prefix_unless_set(fleet_config, tmp_path, this_host):
    assert open_storage("plain", fleet_config).url == str(tmp_path / "fleet")


def test_a_url_given_for_a_target_means_that_place_exactly(fleet_config, tmp_path, this_host):
    assert open_storage(str(tmp_path / "fleet"), fleet_config).url == str(tmp_path / "fleet")
    assert open_storage(str(tmp_path / "fleet" / "host-a"), fleet_config).url == str(
        tmp_path / "fleet" / "host-a"
    )


def test_an_s3_target_has_host_prefixes_by_default(fleet_config, this_host):
    assert open_storage("offsite", fleet_config).url == f"s3://fleet-backups/docker/{this_host}"
    assert open_storage("offsite-flat", fleet_config).url == "s3://fleet-backups/docker"
    assert open_storage("s3://fleet-backups/docker", fleet_config).url == (
        "s3://fleet-backups/docker"
    )


@pytest.mark.parametrize("location", ["plain", "offsite-flat", "/srv/backups", "s3://b/p"])
def test_a_host_for_a_location_without_host_prefixes_is_a_usage_error(fleet_config, location):
    with pytest.raises(errors.UsageError, match="has no host prefixes") as raised:
        open_storage(location, fleet_config, host="host-a")

    assert "\n" not in str(raised.value)
    assert raised.value.hint


def test_a_host_that_is_no_host_name_is_a_usage_error(fleet_config):
    with pytest.raises(errors.UsageError, match="not a host name"):
        open_storage("shared", fleet_config, host="../")


@pytest.mark.parametrize(
    ("location", "expected"),
    [("shared", True), ("plain", False), ("offsite", True), ("offsite-flat", False)],
)
def test_uses_host_prefixes_follows_the_target_and_its_scheme(fleet_config, location, expected):
    assert uses_host_prefixes(location, fleet_config) is expected


def test_uses_host_prefixes_is_false_for_a_url_or_path(fleet_config, tmp_path):
    assert not uses_host_prefixes("s3://fleet-backups/docker", fleet_config)
    assert not uses_host_prefixes(str(tmp_path / "fleet"), fleet_config)


def test_fleet_hosts_lists_the_host_prefixes_holding_objects(fleet_config, tmp_path):
    root = LocalStorage(tmp_path / "fleet")
    for name in (
        "host-a/app-20261126T120000Z-ab01.json",
        "host-b/index/records.json",
        "host-c/.opskit-partial-x",  # only a partial file: nothing committed
        "legacy-20261126T120000Z-ab01.json",  # backups from before host prefixes
        "index/records.json",
        "snapshots/shop-20261126T120000Z-ab01.json",
        "Not A Host/x.json",
    ):
        root.write_bytes(name, b"{}")
    (tmp_path / "fleet" / "host-d").mkdir()  # empty

    assert fleet_hosts("shared", fleet_config) == ["host-a", "host-b"]


def test_fleet_hosts_of_a_missing_directory_is_not_found(fleet_config):
    with pytest.raises(errors.NotFound, match="does not exist"):
        fleet_hosts("shared", fleet_config)


@pytest.mark.parametrize("location", ["plain", "offsite-flat", "s3://fleet-backups/docker"])
def test_fleet_hosts_of_a_location_without_host_prefixes_is_a_usage_error(fleet_config, location):
    with pytest.raises(errors.UsageError, match="has no host prefixes"):
        fleet_hosts(location, fleet_config)

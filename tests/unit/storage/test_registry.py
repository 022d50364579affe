"""Choosing a store from a location: a bare name must be a configured target."""

from __future__ import annotations

import pytest

from opskit import errors
from opskit.config.load import parse_config
from opskit.config.schema import Config
from opskit.storage.local import LocalStorage
from opskit.storage.registry import open_storage

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

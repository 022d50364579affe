"""The one place that chooses how bytes move: fifo for a local engine, archive API otherwise."""

import pytest

from opskit import errors
from opskit.engine import client, transfer


def _engine(address: str) -> client.Engine:
    # No connection is made: choosing needs only the address.
    return client.Engine(
        client=None,  # type: ignore[arg-type]
        address=address,
        shares_filesystem=client.is_local_address(address),
    )


@pytest.mark.parametrize(
    "address", ["unix:///var/run/docker.sock", "/var/run/docker.sock", "npipe:////./pipe/x"]
)
def test_auto_picks_the_fifo_for_a_local_engine(address):
    chosen = transfer.choose_transfer(_engine(address), "auto")
    try:
        assert chosen.name == "fifo"
    finally:
        chosen.close()


@pytest.mark.parametrize("address", ["tcp://10.0.0.5:2376", "ssh://ops@db1", "http://host:2375"])
def test_auto_picks_the_archive_api_for_a_remote_engine(address):
    assert transfer.choose_transfer(_engine(address), "auto").name == "archive-api"


def test_a_forced_mode_wins():
    assert transfer.choose_transfer(_engine("unix:///x"), "archive-api").name == "archive-api"
    forced = transfer.choose_transfer(_engine("tcp://h:1"), "fifo")
    try:
        assert forced.name == "fifo"
    finally:
        forced.close()


def test_an_unknown_mode_is_a_usage_error():
    with pytest.raises(errors.UsageError, match="unknown transfer"):
        transfer.choose_transfer(_engine("unix:///x"), "carrier-pigeon")

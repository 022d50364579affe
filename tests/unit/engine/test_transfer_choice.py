"""The one place that chooses how bytes move, and how an engine says it runs on this machine."""

import socket

import pytest

from opskit import errors
from opskit.engine import client, transfer


def _engine(on_this_host: bool) -> client.Engine:
    # No connection is made: choosing needs only what the engine said of itself.
    return client.Engine(
        client=None,  # type: ignore[arg-type]
        address="unix:///var/run/docker.sock",
        shares_filesystem=on_this_host,
    )


def test_auto_picks_the_fifo_for_an_engine_on_this_machine():
    chosen = transfer.choose_transfer(_engine(True), "auto")
    try:
        assert chosen.name == "fifo"
    finally:
        chosen.close()


def test_auto_picks_the_remote_path_for_any_other_engine():
    assert transfer.choose_transfer(_engine(False), "auto").name == "remote"


def test_a_forced_mode_wins():
    assert transfer.choose_transfer(_engine(True), "archive-api").name == "archive-api"
    assert transfer.choose_transfer(_engine(True), "remote").name == "remote"
    forced = transfer.choose_transfer(_engine(False), "fifo")
    try:
        assert forced.name == "fifo"
    finally:
        forced.close()


def test_an_unknown_mode_is_a_usage_error():
    with pytest.raises(errors.UsageError, match="unknown transfer"):
        transfer.choose_transfer(_engine(True), "carrier-pigeon")


def _info(tmp_path, name=None, engine_id="ID-1"):
    return {"Name": name or socket.gethostname(), "DockerRootDir": str(tmp_path), "ID": engine_id}


def test_an_engine_with_our_name_and_a_data_root_here_is_on_this_machine(tmp_path):
    assert client.runs_on_this_host(_info(tmp_path))


def test_an_engine_in_a_vm_behind_a_unix_socket_is_not(tmp_path):
    # Docker Desktop: the socket is local, the engine's host is the VM "docker-desktop".
    assert not client.runs_on_this_host(_info(tmp_path, name="docker-desktop"))


def test_an_engine_whose_data_root_is_not_here_is_not(tmp_path):
    assert not client.runs_on_this_host(_info(tmp_path / "missing"))


def test_an_engine_id_file_must_match_the_engine_that_answered(tmp_path):
    (tmp_path / "engine-id").write_text("ID-1\n")
    assert client.runs_on_this_host(_info(tmp_path, engine_id="ID-1"))
    assert not client.runs_on_this_host(_info(tmp_path, engine_id="ID-2"))

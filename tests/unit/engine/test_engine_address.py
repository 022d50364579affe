"""Engine references and addresses: flags, environment, Docker contexts."""

import json

import pytest

from opskit import errors
from opskit.cli.options import engine_reference
from opskit.engine import client


def test_a_context_flag_becomes_a_context_reference():
    assert engine_reference(None, "prod") == "context:prod"
    assert engine_reference("tcp://h:2376", None) == "tcp://h:2376"
    assert engine_reference(None, None) is None


def test_both_flags_are_a_usage_error():
    with pytest.raises(errors.UsageError, match="name two engines"):
        engine_reference("tcp://h:2376", "prod")


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """An empty ~/.docker of our own, and no engine settings from the environment."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    # docker-py finds contexts beside config.json, so (like the docker CLI's) it must exist.
    (tmp_path / "config.json").write_text("{}")
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _add_context(config_dir, name, host):
    import hashlib

    directory = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    directory.mkdir(parents=True)
    meta = {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}}
    (directory / "meta.json").write_text(json.dumps(meta))


def test_nothing_set_means_the_local_socket(docker_config):
    assert client.resolve_address(None).url == "unix:///var/run/docker.sock"


def test_docker_host_wins_over_contexts(docker_config, monkeypatch):
    _add_context(docker_config, "prod", "tcp://prod:2375")
    monkeypatch.setenv("DOCKER_CONTEXT", "prod")
    monkeypatch.setenv("DOCKER_HOST", "tcp://other:2375")
    assert client.resolve_address(None).url == "tcp://other:2375"


def test_a_named_context_gives_its_host(docker_config):
    _add_context(docker_config, "prod", "tcp://prod:2375")
    address = client.resolve_address("context:prod")
    assert address.url == "tcp://prod:2375"
    assert address.describe() == "tcp://prod:2375 (context prod)"


def test_docker_context_and_the_current_context_are_followed(docker_config, monkeypatch):
    _add_context(docker_config, "prod", "tcp://prod:2375")
    _add_context(docker_config, "lab", "tcp://lab:2375")
    (docker_config / "config.json").write_text(json.dumps({"currentContext": "lab"}))
    assert client.resolve_address(None).url == "tcp://lab:2375"
    monkeypatch.setenv("DOCKER_CONTEXT", "prod")
    assert client.resolve_address(None).url == "tcp://prod:2375"


def test_an_unknown_context_is_a_usage_error(docker_config):
    with pytest.raises(errors.UsageError, match="no Docker context named 'nope'"):
        client.resolve_address("context:nope")


def test_tls_comes_from_the_environment_for_tcp(docker_config, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path / "missing-certs"))
    with pytest.raises(errors.UsageError, match="TLS settings for tcp://h:2376"):
        client.resolve_address("tcp://h:2376")
    assert client.resolve_address("unix:///x.sock").tls is None

"""S3 failures become one-line `opskit.errors` naming the bucket or key.

Wrong credentials and access denied run against a second moto_server that enforces
authentication and IAM policies; a missing bucket against the normal one; an unreachable
endpoint against a port nothing listens on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opskit import errors
from opskit.config.targets import TargetConfig
from opskit.storage.s3 import S3Storage
from tests.s3_fixtures import AuthS3, free_port, s3_environment

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def every_operation(storage: S3Storage) -> dict[str, Callable[[], object]]:
    """Each storage operation, called once; a large write goes through the multipart path."""

    def large_write() -> None:
        with storage.create("vol/big.tar.zst") as writer:
            writer.write(b"x" * (9 * MiB))

    return {
        "check_writable": storage.check_writable,
        "list": lambda: list(storage.list()),
        "stat": lambda: storage.stat("vol/1.json"),
        "open": lambda: storage.open("vol/1.json"),
        "remove": lambda: storage.remove("vol/1.json"),
        "small write": lambda: storage.write_bytes("vol/1.json", b"{}"),
        "large write": large_write,
    }


def assert_one_line(error: BaseException, *fragments: str, operation: str = "") -> None:
    message = str(error)
    assert "\n" not in message, operation
    assert "Traceback" not in message, operation
    for fragment in fragments:
        assert fragment in message, f"{operation}: {message}"


@pytest.fixture
def auth_env(s3_auth_server: AuthS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Return a function that points boto3's chain at the auth server with given keys."""

    def use(access_key: str, secret_key: str) -> S3Storage:
        for name, value in s3_environment(s3_auth_server.endpoint, tmp_path).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        # The bucket's root: moto's signature check fails on a "/" in a query string (the
        # Prefix of a listing under backups/), which real S3 accepts.
        return S3Storage.from_target(TargetConfig(url=f"s3://{s3_auth_server.bucket}"))

    return use


def test_allowed_credentials_work_on_the_auth_server(auth_env, s3_auth_server) -> None:
    storage = auth_env(*s3_auth_server.allowed)
    storage.check_writable()
    storage.write_bytes("vol/ok.json", b"{}")
    assert storage.read_bytes("vol/ok.json") == b"{}"
    storage.remove("vol/ok.json")


def test_unknown_access_key_is_one_line_naming_the_bucket(auth_env, s3_auth_server) -> None:
    storage = auth_env("AKIAOPSKITUNKNOWN000", "whatever")
    for operation, call in every_operation(storage).items():
        with pytest.raises(errors.StorageError) as raised:
            call()
        assert_one_line(
            raised.value,
            f"S3 rejected the credentials for bucket {s3_auth_server.bucket}",
            "access key id is unknown",
            "AWS_ACCESS_KEY_ID",
            operation=operation,
        )


def test_wrong_secret_key_is_one_line_naming_the_bucket(auth_env, s3_auth_server) -> None:
    access_key, _ = s3_auth_server.allowed
    storage = auth_env(access_key, "not-the-secret")
    for operation, call in every_operation(storage).items():
        with pytest.raises(errors.StorageError) as raised:
            call()
        assert_one_line(
            raised.value,
            f"bucket {s3_auth_server.bucket}",
            "secret access key does not match",
            operation=operation,
        )


def test_access_denied_is_one_line_naming_bucket_or_key(auth_env, s3_auth_server) -> None:
    storage = auth_env(*s3_auth_server.denied)
    bucket = s3_auth_server.bucket
    expected = {
        "check_writable": f"s3://{bucket}",
        "list": f"s3://{bucket}",
        "stat": f"s3://{bucket}/vol/1.json",
        "open": f"s3://{bucket}/vol/1.json",
        "remove": f"s3://{bucket}/vol/1.json",
        "small write": f"s3://{bucket}/vol/1.json",
        "large write": f"s3://{bucket}/vol/big.tar.zst",
    }
    for operation, call in every_operation(storage).items():
        with pytest.raises(errors.StorageError) as raised:
            call()
        assert_one_line(
            raised.value, "access denied", expected[operation], "s3:PutObject", operation=operation
        )


def test_missing_bucket_is_not_found_naming_the_bucket(s3_env) -> None:
    storage = S3Storage.from_target(TargetConfig(url="s3://opskit-no-such-bucket/backups"))
    for operation, call in every_operation(storage).items():
        with pytest.raises(errors.NotFound) as raised:
            call()
        assert_one_line(
            raised.value, "bucket opskit-no-such-bucket does not exist", operation=operation
        )


def test_unreachable_endpoint_names_the_endpoint(s3_env, monkeypatch) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    storage = S3Storage.from_target(TargetConfig(url="s3://some-bucket/backups"))
    started = time.monotonic()
    with pytest.raises(errors.StorageUnreachable) as raised:
        storage.check_writable()
    assert time.monotonic() - started < 15  # few attempts: a fast answer
    assert_one_line(raised.value, f"cannot reach S3 endpoint {endpoint}", "bucket some-bucket")
    for operation in every_operation(storage):
        storage = S3Storage.from_target(TargetConfig(url="s3://some-bucket/backups"))
        started = time.monotonic()
        with pytest.raises(errors.StorageUnreachable) as raised:
            every_operation(storage)[operation]()
        assert time.monotonic() - started < 15, operation  # a quick first contact
        assert_one_line(raised.value, endpoint, operation=operation)


def test_endpoint_url_of_the_target_wins_over_the_environment(s3_env, s3_bucket, monkeypatch):
    real_endpoint = s3_env["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    storage = S3Storage.from_target(
        TargetConfig(url=f"s3://{s3_bucket}/x", endpoint_url=real_endpoint)
    )
    storage.check_writable()
    assert storage.endpoint == real_endpoint


def test_no_credentials_at_all(s3_env, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = S3Storage.from_target(TargetConfig(url="s3://some-bucket/backups"))
    with pytest.raises(errors.StorageError) as raised:
        storage.check_writable()
    assert_one_line(raised.value, "no AWS credentials found for bucket some-bucket")


def test_unknown_profile_is_a_config_error(s3_env) -> None:
    with pytest.raises(errors.ConfigError) as raised:
        S3Storage.from_target(TargetConfig(url="s3://some-bucket/x", profile="nope"))
    assert_one_line(raised.value, "AWS profile 'nope'")


def test_profile_from_the_aws_config_file(s3_env, s3_bucket, tmp_path, monkeypatch) -> None:
    """The credential chain: a named profile in the files AWS_CONFIG_FILE and
    AWS_SHARED_CREDENTIALS_FILE point to, with its own endpoint_url."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # the environment beats the profile
    endpoint = s3_env["AWS_ENDPOINT_URL"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    Path(s3_env["AWS_CONFIG_FILE"]).write_text(
        f"[profile backups]\nregion = eu-west-1\nendpoint_url = {endpoint}\n"
    )
    Path(s3_env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[backups]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    storage = S3Storage.from_target(TargetConfig(url=f"s3://{s3_bucket}/p", profile="backups"))
    assert storage.client.meta.region_name == "eu-west-1"
    storage.write_bytes("from-profile.json", b"{}")
    assert [info.name for info in storage.list()] == ["from-profile.json"]

"""Translating botocore exceptions into one-line opskit errors (no network: the exceptions are
built the way botocore builds them)."""

from __future__ import annotations

import botocore.exceptions
import pytest

from opskit import errors
from opskit.storage.s3 import failures as s3
from opskit.storage.s3 import parse_s3_url

WHERE = s3.Where(
    bucket="ops-backups",
    endpoint="https://s3.eu-west-1.amazonaws.com",
    key="docker/pgdata/20260101T000000Z.tar.zst",
    action="uploading",
)
TARGET = "s3://ops-backups/docker/pgdata/20260101T000000Z.tar.zst"


def client_error(code: str, message: str = "", **extra) -> botocore.exceptions.ClientError:
    response = {"Error": {"Code": code, "Message": message, **extra}}
    return botocore.exceptions.ClientError(response, "PutObject")  # type: ignore[arg-type]


def classify(exc: BaseException) -> errors.OpskitError:
    error = s3.classify_error(exc, WHERE)
    assert "\n" not in str(error)
    return error


def test_no_such_bucket_is_not_found_naming_bucket_and_endpoint() -> None:
    error = classify(client_error("NoSuchBucket", "The specified bucket does not exist"))
    assert isinstance(error, errors.NotFound)
    assert str(error).startswith(
        "bucket ops-backups does not exist at https://s3.eu-west-1.amazonaws.com"
    )


@pytest.mark.parametrize("code", ["NoSuchKey", "404", "NotFound"])
def test_missing_key_is_not_found_naming_the_key(code: str) -> None:
    error = classify(client_error(code))
    assert isinstance(error, errors.NotFound)
    assert str(error) == f"no object {TARGET}"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("InvalidAccessKeyId", "the access key id is unknown"),
        ("SignatureDoesNotMatch", "the secret access key does not match"),
        ("ExpiredToken", "the session token has expired"),
    ],
)
def test_credential_errors_name_the_bucket_and_the_fix(code: str, reason: str) -> None:
    error = classify(client_error(code, "long\nmulti-line\nmessage"))
    assert type(error) is errors.StorageError
    assert str(error).startswith(f"S3 rejected the credentials for bucket ops-backups: {reason}")
    assert "AWS_ACCESS_KEY_ID" in str(error)


@pytest.mark.parametrize("code", ["AccessDenied", "403", "AllAccessDisabled"])
def test_access_denied_names_the_key_and_the_permissions(code: str) -> None:
    error = classify(client_error(code, "Access Denied"))
    assert type(error) is errors.StorageError
    assert str(error).startswith(f"access denied while uploading {TARGET}")
    assert "s3:PutObject" in str(error)


def test_wrong_region_names_the_bucket_region() -> None:
    error = classify(client_error("PermanentRedirect", "redirect", Region="eu-central-1"))
    assert str(error) == "bucket ops-backups is in another region: set region: eu-central-1"


def test_archived_object_explains_the_glacier_restore() -> None:
    error = classify(client_error("InvalidObjectState", "The operation is not valid"))
    assert "GLACIER" in str(error)
    assert TARGET in str(error)


def test_unknown_client_error_keeps_code_and_message_on_one_line() -> None:
    error = classify(client_error("SlowDown", "Please reduce\nyour request rate."))
    assert str(error) == (
        f"S3 failed while uploading {TARGET}: SlowDown: Please reduce your request rate."
    )


def test_endpoint_connection_error_is_unreachable_naming_the_endpoint() -> None:
    error = classify(
        botocore.exceptions.EndpointConnectionError(endpoint_url="https://minio.internal:9000")
    )
    assert isinstance(error, errors.StorageUnreachable)
    assert str(error).startswith(
        "cannot reach S3 endpoint https://s3.eu-west-1.amazonaws.com (bucket ops-backups)"
    )


def test_connect_timeout_is_unreachable() -> None:
    error = classify(botocore.exceptions.ConnectTimeoutError(endpoint_url="https://x"))
    assert isinstance(error, errors.StorageUnreachable)


def test_connection_lost_mid_transfer_is_unreachable_naming_the_key() -> None:
    error = classify(botocore.exceptions.ReadTimeoutError(endpoint_url="https://x"))
    assert isinstance(error, errors.StorageUnreachable)
    assert TARGET in str(error)


def test_missing_credentials_say_where_to_put_them() -> None:
    error = classify(botocore.exceptions.NoCredentialsError())
    assert type(error) is errors.StorageError
    assert "no AWS credentials found for bucket ops-backups" in str(error)


def test_unknown_profile_is_a_config_error() -> None:
    error = classify(botocore.exceptions.ProfileNotFound(profile="backups"))
    assert isinstance(error, errors.ConfigError)


def test_response_checksum_failure_is_a_checksum_mismatch() -> None:
    error = classify(botocore.exceptions.FlexibleChecksumError(error_msg="expected x, got y"))
    assert isinstance(error, errors.ChecksumMismatch)


def test_opskit_errors_pass_through_unchanged() -> None:
    original = errors.StorageError("already translated")
    assert s3.classify_error(original, WHERE) is original


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    for bad in ["s3://", "s3:///prefix", "/local/path"]:
        with pytest.raises(errors.UsageError):
            parse_s3_url(bad)

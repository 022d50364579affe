"""Fixtures for the loopback S3 server (moto_server over HTTP). Owned by the S3 work.

`s3_server` starts `moto_server` on a free 127.0.0.1 port for the whole session; boto3 reaches it
only through `endpoint_url` (never moto's in-process mocks). `s3_bucket` gives each test a fresh
bucket and empties it afterwards; `s3_env` points boto3's standard chain (in this process and in
subprocesses) at the server. A missing `moto_server` fails the tests with the reason: it is
part of the test dependencies (`pip install -e '.[test]'`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.config
import pytest

TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables of the developer's own AWS set-up that must not leak into tests.
ISOLATED_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
)
STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Server:
    """A running moto_server: its endpoint and the log file of its output."""

    endpoint: str
    log_path: Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_moto_server(log_path: Path, extra_env: dict[str, str] | None = None):
    """Start moto_server on a free port; return (process, endpoint) once it answers HTTP."""
    executable = shutil.which("moto_server")
    if executable is None:
        pytest.fail(
            "moto_server is not installed: the S3 tests need the loopback S3 server; "
            "run `pip install 'moto[server]'` (part of `pip install -e '.[test]'`)",
            pytrace=False,
        )
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    environment = {**os.environ, **TEST_CREDENTIALS, **(extra_env or {})}
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed when the server stops
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            log_file.close()
            pytest.fail(
                f"moto_server exited with {process.returncode} at start: "
                f"{log_path.read_text(errors='replace')[-2000:]}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                break
        except urllib.error.HTTPError:
            break  # it answers HTTP: up
        except OSError:
            if time.monotonic() > deadline:
                _stop(process)
                log_file.close()
                pytest.fail(
                    f"moto_server did not answer on {endpoint} within {STARTUP_TIMEOUT:.0f} s",
                    pytrace=False,
                )
            time.sleep(0.1)
    return process, endpoint, log_file


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto_server for the whole session, stopped at its end."""
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    process, endpoint, log_file = _start_moto_server(log_path)
    try:
        yield S3Server(endpoint=endpoint, log_path=log_path)
    finally:
        _stop(process)
        log_file.close()


@pytest.fixture(scope="session")
def s3_endpoint(s3_server: S3Server) -> str:
    """The loopback S3 endpoint URL, e.g. http://127.0.0.1:40123."""
    return s3_server.endpoint


def make_client(endpoint: str, **credentials: str):
    """Return a boto3 S3 client for `endpoint` (test credentials unless given)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials.get("access_key", "testing"),
        aws_secret_access_key=credentials.get("secret_key", "testing"),
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 3}),
    )


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str):
    """A plain boto3 client for inspecting the server from tests."""
    return make_client(s3_endpoint)


def empty_bucket(client, bucket: str) -> None:
    """Abort every multipart upload and delete every object of `bucket`."""
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=entry["Key"])
    # Versions and delete markers left in a versioned bucket (moto pages them unreliably, so
    # the current objects went first, above).
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])


@pytest.fixture
def s3_bucket(s3_client) -> Iterator[str]:
    """A fresh, empty bucket with a unique name; emptied and deleted after the test."""
    bucket = f"opskit-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    yield bucket
    try:
        empty_bucket(s3_client, bucket)
        s3_client.delete_bucket(Bucket=bucket)
    except s3_client.exceptions.NoSuchBucket:
        pass  # the test removed it


def s3_environment(endpoint: str, home: Path) -> dict[str, str]:
    """Return the variables that point boto3's chain at `endpoint` and away from `~/.aws`."""
    return {
        **TEST_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture
def s3_env(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point boto3's standard chain at the loopback server, here and in subprocesses.

    Sets AWS_ENDPOINT_URL, test credentials and region in this process (undone after the test)
    and returns the full environment to pass as `env=` to a subprocess such as the CLI.
    """
    for name in ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    variables = s3_environment(s3_endpoint, tmp_path)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


@dataclass(frozen=True)
class AuthS3:
    """A moto_server that checks credentials and IAM policies.

    `allowed` keys may do anything; `denied` keys belong to a user with no policy.
    """

    endpoint: str
    bucket: str
    allowed: tuple[str, str]
    denied: tuple[str, str]


# Requests moto_server serves before it starts checking credentials: exactly the set-up below.
AUTH_SETUP_REQUESTS = 4


@pytest.fixture(scope="session")
def s3_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthS3]:
    """A second moto_server with authentication and IAM enforced (INITIAL_NO_AUTH_ACTION_COUNT),
    a bucket, an allowed user and a user without permissions."""
    log_path = tmp_path_factory.mktemp("moto-auth") / "moto_server.log"
    process, endpoint, log_file = _start_moto_server(
        log_path, {"INITIAL_NO_AUTH_ACTION_COUNT": str(AUTH_SETUP_REQUESTS)}
    )
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        bucket = f"opskit-auth-{uuid.uuid4().hex[:12]}"
        make_client(endpoint).create_bucket(Bucket=bucket)  # request 1
        iam.create_user(UserName="opskit-admin")  # 2
        admin_key = iam.create_access_key(UserName="opskit-admin")["AccessKey"]  # 3
        iam.put_user_policy(  # 4: from here on, every request is authenticated
            UserName="opskit-admin",
            PolicyName="everything",
            PolicyDocument='{"Version": "2012-10-17", "Statement": '
            '[{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
        )
        admin_iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=admin_key["AccessKeyId"],
            aws_secret_access_key=admin_key["SecretAccessKey"],
        )
        admin_iam.create_user(UserName="opskit-nobody")
        nobody_key = admin_iam.create_access_key(UserName="opskit-nobody")["AccessKey"]
        yield AuthS3(
            endpoint=endpoint,
            bucket=bucket,
            allowed=(admin_key["AccessKeyId"], admin_key["SecretAccessKey"]),
            denied=(nobody_key["AccessKeyId"], nobody_key["SecretAccessKey"]),
        )
    finally:
        _stop(process)
        log_file.close()

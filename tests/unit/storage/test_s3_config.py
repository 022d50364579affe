"""Per-target S3 settings: validation, and how they reach the boto3 client and each upload.

No network: building a boto3 client does not contact the endpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest
import yaml

from opskit.config.load import parse_config
from opskit.config.schema import Config
from opskit.config.targets import TargetConfig
from opskit.storage import s3

MiB = 1024 * 1024
EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "s3-target.example.yaml"


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


def test_from_target_passes_endpoint_region_and_addressing() -> None:
    storage = s3.S3Storage.from_target(
        TargetConfig(
            url="s3://ops-backups/docker/",
            endpoint_url="https://minio.internal:9000",
            region="eu-west-1",
            addressing_style="path",
        )
    )
    assert (storage.bucket, storage.prefix, storage.url) == (
        "ops-backups",
        "docker",
        "s3://ops-backups/docker",
    )
    meta = storage.client.meta
    assert meta.endpoint_url == "https://minio.internal:9000"
    assert meta.region_name == "eu-west-1"
    assert meta.config.s3 == {"addressing_style": "path"}
    assert storage.endpoint == "https://minio.internal:9000"
    assert storage.location("pgdata/1.tar.zst") == "s3://ops-backups/docker/pgdata/1.tar.zst"


def test_from_target_uses_standard_retries_with_ten_attempts() -> None:
    storage = s3.S3Storage.from_target(TargetConfig(url="s3://b/p"))
    assert storage.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 10}


def test_users_retry_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    storage = s3.S3Storage.from_target(TargetConfig(url="s3://b/p"))
    assert storage.client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}


def test_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    storage = s3.S3Storage.from_target(TargetConfig(url="s3://b"))
    assert storage.endpoint == "http://127.0.0.1:9000"


def test_region_from_a_profile(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[profile backups]\nregion = ap-southeast-2\n")
    storage = s3.S3Storage.from_target(TargetConfig(url="s3://b", profile="backups"))
    assert storage.client.meta.region_name == "ap-southeast-2"


def test_pool_has_room_for_the_configured_concurrency() -> None:
    storage = s3.S3Storage.from_target(TargetConfig(url="s3://b", max_concurrency=16))
    assert storage.client.meta.config.max_pool_connections >= 16


def test_put_arguments_apply_storage_class_to_archives_only() -> None:
    storage = s3.S3Storage.from_target(
        TargetConfig(
            url="s3://b",
            storage_class="GLACIER_IR",
            sse="aws:kms",
            sse_kms_key_id="alias/backups",
        )
    )
    encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/backups"}
    assert storage.put_arguments("vol/1.tar.zst") == {"StorageClass": "GLACIER_IR", **encryption}
    assert storage.put_arguments("vol/1.json") == encryption


def test_no_settings_no_put_arguments() -> None:
    storage = s3.S3Storage.from_target(TargetConfig(url="s3://b"))
    assert storage.put_arguments("vol/1.tar.zst") == {}


@pytest.mark.parametrize(
    ("given", "expected"),
    [(67108864, 64 * MiB), ("64MiB", 64 * MiB), ("1 GiB", 1024 * MiB), ("16mib", 16 * MiB)],
)
def test_part_size_accepts_bytes_and_units(given: object, expected: int) -> None:
    assert TargetConfig(url="s3://b", part_size=given).part_size == expected


@pytest.mark.parametrize("given", ["4MiB", "6GiB", "64 MB", "lots", 1024])
def test_part_size_outside_s3_limits_is_rejected(given: object) -> None:
    with pytest.raises(pydantic.ValidationError):
        TargetConfig(url="s3://b", part_size=given)


def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(pydantic.ValidationError):
        TargetConfig(url="s3://b", max_concurrency=0)


def test_s3_settings_on_a_local_target_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="storage_class"):
        TargetConfig(url="/var/backups", storage_class="STANDARD_IA")


def test_kms_key_needs_kms_encryption() -> None:
    with pytest.raises(pydantic.ValidationError, match="sse: aws:kms"):
        TargetConfig(url="s3://b", sse="AES256", sse_kms_key_id="alias/x")


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        TargetConfig(url="s3://b", chunk_size=5)  # type: ignore[call-arg]


def test_example_config_validates_and_every_target_builds_a_store(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[profile backups]\nregion = eu-west-1\n")
    config = parse_config(EXAMPLE.read_text(), source=str(EXAMPLE))
    assert config.targets
    for name, target in config.targets.items():
        if target.url.startswith("s3://"):
            storage = s3.S3Storage.from_target(config.resolve_target(name))
            storage.close()


def test_example_config_sets_every_s3_setting_somewhere() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    used = {key for target in document["targets"].values() for key in target}
    assert used >= {
        "url",
        "endpoint_url",
        "region",
        "profile",
        "addressing_style",
        "storage_class",
        "sse",
        "sse_kms_key_id",
        "part_size",
        "max_concurrency",
    }
    Config.model_validate(document)

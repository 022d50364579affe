"""Config models for backup targets: where backups go and how to reach the store."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opskit.config.encryption import Encryption

MIB = 1024 * 1024
SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": MIB, "gib": 1024 * MIB}
S3_SETTINGS = (
    "endpoint_url",
    "region",
    "profile",
    "addressing_style",
    "storage_class",
    "sse",
    "sse_kms_key_id",
    "part_size",
    "max_concurrency",
)


def parse_size(value: object) -> object:
    """Given a size as an int or a string like `64MiB` / `1 GiB`, return bytes as an int.

    Anything else is returned unchanged for pydantic to reject.
    """
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
    if match is None or match.group(2).lower() not in SIZE_UNITS:
        raise ValueError(f"not a size: {value!r} (write bytes, or e.g. 64MiB, 1GiB)")
    return int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]


class TargetConfig(BaseModel):
    """One named backup target. Only `url` is needed; the rest tune S3 and S3-compatible stores."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        description="A local directory, or s3://bucket/prefix.",
        examples=["/var/backups/opskit", "s3://ops-backups/docker"],
    )
    host_prefix: bool | None = Field(
        default=None,
        description="Keep this machine's backups under <url>/<host name>/, so that many hosts "
        "share one target: each lists, restores and prunes its own, and can reach another's "
        "by its host name. Default: true for s3:// urls, false for local directories. A bare "
        "s3://bucket/prefix given instead of the target's name means that prefix exactly.",
        examples=[True, False],
    )
    endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint for S3-compatible stores (MinIO, R2, B2, ...). "
        "Default: boto3's chain (AWS_ENDPOINT_URL, ~/.aws/config).",
        examples=["https://minio.internal:9000"],
    )
    region: str | None = Field(
        default=None,
        description="S3 region. Default: boto3's chain (AWS_REGION, AWS_DEFAULT_REGION, "
        "~/.aws/config), else us-east-1.",
        examples=["eu-west-1"],
    )
    profile: str | None = Field(
        default=None,
        description="Profile from ~/.aws/config and ~/.aws/credentials. Default: AWS_PROFILE, "
        "else the default chain (environment, files, instance or task role).",
        examples=["backups"],
    )
    addressing_style: Literal["path", "virtual", "auto"] | None = Field(
        default=None,
        description="Bucket addressing: path (endpoint/bucket/key, needed by many MinIO and "
        "Ceph set-ups), virtual (bucket.endpoint/key), or auto (boto3's choice, the default).",
        examples=["path"],
    )
    storage_class: str | None = Field(
        default=None,
        description="S3 storage class for archives; metadata (*.json) stays STANDARD so that "
        "list can always read it. GLACIER and DEEP_ARCHIVE archives need an S3 restore "
        "before opskit can read them; GLACIER_IR does not.",
        examples=["STANDARD_IA", "GLACIER_IR"],
    )
    sse: Literal["AES256", "aws:kms", "aws:kms:dsse"] | None = Field(
        default=None,
        description="Server-side encryption of every object written: AES256 (SSE-S3), "
        "aws:kms (SSE-KMS) or aws:kms:dsse. Default: the bucket's default encryption.",
        examples=["aws:kms"],
    )
    sse_kms_key_id: str | None = Field(
        default=None,
        description="KMS key id, ARN or alias for sse: aws:kms. Default: the account's aws/s3 key.",
        examples=["alias/backups"],
    )
    part_size: int | None = Field(
        default=None,
        ge=5 * MIB,
        le=5 * 1024 * MIB,
        description="Multipart part size, in bytes or with a unit (64MiB). Default: 5 MiB "
        "pieces, and parts past 9.8 GiB assembled from them by server-side copy (1 GiB), so "
        "that a 5 TiB archive stays under 10,000 parts in fixed memory. An explicit size is "
        "used for every part, from memory (stores like Cloudflare R2 need equal parts); "
        "archives then stop at 10,000 parts of it.",
        examples=["64MiB", 67108864],
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Pieces (or explicit parts) uploaded at once. Default: 2 (1 for an "
        "explicit part_size above 8 MiB). Memory for buffers is (max_concurrency + 1) x 5 MiB, "
        "or x part_size when it is set.",
        examples=[4],
    )

    encryption: Encryption | None = Field(
        default=None,
        description="Encrypt every backup to this target with age (see Encryption).",
        examples=[
            {"recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]}
        ],
    )

    def uses_host_prefix(self) -> bool:
        """Return whether this target keeps each host's backups under a prefix of its own."""
        if self.host_prefix is not None:
            return self.host_prefix
        return self.url.startswith("s3://")

    @field_validator("part_size", mode="before")
    @classmethod
    def _parse_part_size(cls, value: object) -> object:
        return parse_size(value)

    @model_validator(mode="after")
    def _check_s3_settings(self) -> TargetConfig:
        if not self.url.startswith("s3://"):
            given = [name for name in S3_SETTINGS if getattr(self, name) is not None]
            if given:
                raise ValueError(f"S3 settings ({', '.join(given)}) need an s3:// url")
        if self.sse_kms_key_id is not None and self.sse not in ("aws:kms", "aws:kms:dsse"):
            raise ValueError("sse_kms_key_id needs sse: aws:kms")
        return self

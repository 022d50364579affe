"""Config models for backup targets: where backups go and how to reach the store."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TargetConfig(BaseModel):
    """One named backup target. Only `url` is needed; the rest tune S3 and S3-compatible stores."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        description="A local directory, or s3://bucket/prefix.",
        examples=["/var/backups/opskit", "s3://ops-backups/docker"],
    )
    endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint for S3-compatible stores (MinIO, R2, B2, ...). "
        "Default: boto3's chain (AWS_ENDPOINT_URL, ~/.aws/config).",
        examples=["https://minio.internal:9000"],
    )
    region: str | None = Field(default=None, description="S3 region.", examples=["eu-west-1"])
    profile: str | None = Field(
        default=None, description="Profile from ~/.aws/config.", examples=["backups"]
    )
    addressing_style: Literal["path", "virtual", "auto"] | None = Field(
        default=None, description="S3 bucket addressing style.", examples=["path"]
    )
    storage_class: str | None = Field(
        default=None,
        description="S3 storage class for archives.",
        examples=["STANDARD_IA", "GLACIER_IR"],
    )
    sse: Literal["AES256", "aws:kms"] | None = Field(
        default=None,
        description="Server-side encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS).",
        examples=["aws:kms"],
    )
    sse_kms_key_id: str | None = Field(
        default=None, description="KMS key id for sse: aws:kms.", examples=["alias/backups"]
    )
    part_size: int | None = Field(
        default=None,
        description="Multipart part size in bytes. Default: 16 MiB, grown automatically so "
        "that a 5 TiB archive stays under 10,000 parts.",
        examples=[67108864],
    )
    max_concurrency: int | None = Field(
        default=None, description="Parts uploaded at once (default 4).", examples=[4]
    )

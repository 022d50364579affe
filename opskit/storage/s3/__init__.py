"""The S3 (and S3-compatible) store; the only package that imports boto3 and botocore."""

from opskit.storage.s3.store import S3Storage, parse_s3_url

__all__ = ["S3Storage", "parse_s3_url"]

"""Every boto3/botocore failure, as a one-line opskit error naming the bucket or key."""

from __future__ import annotations

from dataclasses import dataclass

import botocore.exceptions

from opskit import errors

CREDENTIAL_CODES = {
    "InvalidAccessKeyId": "the access key id is unknown",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "InvalidToken": "the session token is invalid",
    "ExpiredToken": "the session token has expired",
    "TokenRefreshRequired": "the session token has expired",
    "InvalidSecurity": "the security token is invalid",
}
CREDENTIAL_HINT = (
    "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the target's profile"
)
NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
ACCESS_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
REDIRECT_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301", "IllegalLocation"}


def one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class Where:
    """What an S3 call was about, for error messages."""

    bucket: str
    endpoint: str
    key: str | None = None
    action: str = "accessing"

    @property
    def target(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key is not None else f"s3://{self.bucket}"


def classify_error(exc: BaseException, where: Where) -> errors.OpskitError:
    """Given a boto3/botocore (or socket) exception, return the opskit error to raise.

    The message is one line and names the bucket or key; the original exception stays as
    `__cause__` for the debug log.
    """
    if isinstance(exc, errors.OpskitError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        return _classify_client_error(exc, where)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return errors.StorageError(
            f"no AWS credentials found for bucket {where.bucket}",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the target's profile",
        )
    if isinstance(
        exc,
        botocore.exceptions.PartialCredentialsError | botocore.exceptions.CredentialRetrievalError,
    ):
        return errors.StorageError(
            f"incomplete AWS credentials for bucket {where.bucket}: {one_line(exc)}",
            CREDENTIAL_HINT,
        )
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return errors.ConfigError(one_line(exc), "check AWS_PROFILE and the target's profile")
    if isinstance(exc, botocore.exceptions.SSLError):
        return errors.StorageUnreachable(
            f"TLS failed with S3 endpoint {where.endpoint} (bucket {where.bucket}): {one_line(exc)}"
        )
    if isinstance(exc, botocore.exceptions.ConnectionError):  # refused, DNS, connect timeout
        return errors.StorageUnreachable(
            f"cannot reach S3 endpoint {where.endpoint} (bucket {where.bucket})",
            "check endpoint_url / AWS_ENDPOINT_URL and the network",
        )
    if isinstance(exc, botocore.exceptions.HTTPClientError | ConnectionError | TimeoutError):
        return errors.StorageUnreachable(
            f"connection to S3 endpoint {where.endpoint} lost while {where.action} "
            f"{where.target}, after retries"
        )
    if isinstance(exc, botocore.exceptions.FlexibleChecksumError):
        return errors.ChecksumMismatch(
            f"S3 checksum mismatch while {where.action} {where.target}: {one_line(exc)}"
        )
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return errors.UsageError(f"invalid S3 request for {where.target}: {one_line(exc)}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return errors.StorageError(
            f"S3 failed while {where.action} {where.target}: {one_line(exc)}"
        )
    return errors.StorageError(
        f"failed {where.action} {where.target}: {type(exc).__name__}: {one_line(exc)}"
    )


def _classify_client_error(
    exc: botocore.exceptions.ClientError, where: Where
) -> errors.OpskitError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = one_line(error.get("Message", "") or code)
    if code == "NoSuchBucket":
        return errors.NotFound(
            f"bucket {where.bucket} does not exist at {where.endpoint}",
            "create it, or fix the target URL, endpoint_url or region",
        )
    if code in NOT_FOUND_CODES:
        return errors.NotFound(f"no object {where.target}")
    if code in CREDENTIAL_CODES:
        return errors.StorageError(
            f"S3 rejected the credentials for bucket {where.bucket}: {CREDENTIAL_CODES[code]}",
            CREDENTIAL_HINT,
        )
    if code in ACCESS_DENIED_CODES:
        return errors.StorageError(
            f"access denied while {where.action} {where.target}",
            "check the credentials and that their policy allows s3:ListBucket, s3:GetObject, "
            "s3:PutObject, s3:DeleteObject and s3:AbortMultipartUpload there",
        )
    if code in REDIRECT_CODES:
        region = error.get("Region") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPHeaders", {}
        ).get("x-amz-bucket-region")
        where_hint = f"set region: {region}" if region else "set the target's region"
        return errors.StorageError(f"bucket {where.bucket} is in another region", where_hint)
    if code == "InvalidObjectState":
        return errors.StorageError(
            f"{where.target} is archived (GLACIER or DEEP_ARCHIVE storage class)",
            "restore it in S3 first, or use GLACIER_IR for instantly readable archives",
        )
    if code == "NoSuchUpload":
        return errors.StorageError(
            f"the multipart upload of {where.target} vanished (aborted elsewhere?)"
        )
    if code.startswith("KMS") or code == "KMS.NotFoundException":
        return errors.StorageError(f"KMS refused while {where.action} {where.target}: {message}")
    if code in ("PreconditionFailed", "412"):
        return errors.StorageError(f"{where.target} changed while {where.action} it")
    return errors.StorageError(f"S3 failed while {where.action} {where.target}: {code}: {message}")


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return None

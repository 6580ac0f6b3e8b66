"""The project's buckets: ``SecureBucket`` for data, ``AccessLogBucket`` for their access logs.

``SecureBucket`` and ``AccessLogBucket`` are subclasses of ``s3.Bucket`` (not wrappers), so a
bucket keeps its construct path, logical id and cross-stack output names: swapping one in for a
plain ``s3.Bucket`` with the same id does not replace the deployed bucket.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..nag import CHECKOV_S3_ACCESS_LOGGING, acknowledge, skip_checkov


class AccessLogBucket(s3.Bucket):
    """Target of S3 server access logs: SSE-S3 (log delivery cannot use SSE-KMS), private,
    SSL-only, versioned, logs kept ``retention_days``. Log delivery is granted by a bucket policy
    (feature flag ``@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy``), not by ACLs."""

    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int = 365) -> None:
        super().__init__(
            scope,
            construct_id,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(retention_days),
                    noncurrent_version_expiration=Duration.days(30),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self,
            "AwsSolutions-S1",
            f"{construct_id} is the server access log target; logging its own access would recurse.",
        )
        skip_checkov(
            self,
            {CHECKOV_S3_ACCESS_LOGGING: "The server access log target; logging its own access would recurse."},
        )


class SecureBucket(s3.Bucket):
    """A data bucket as every bucket of the project must be: SSL-only, encrypted (SSE-S3, or
    SSE-KMS with ``encryption_key`` and an S3 bucket key), all public access blocked, objects owned by the bucket owner (no ACLs), versioned, server access
    logs to ``access_logs`` under ``<log_prefix>/``, retained when the stack is deleted."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        access_logs: s3.IBucket,
        log_prefix: str,
        noncurrent_version_days: int = 90,
        lifecycle_rules: Sequence[s3.LifecycleRule] = (),
        encryption_key: kms.IKey | None = None,
    ) -> None:
        if not log_prefix or log_prefix.startswith("/") or log_prefix.endswith("/"):
            raise ValueError(f"log_prefix {log_prefix!r}: a name without slashes at either end")
        super().__init__(
            scope,
            construct_id,
            versioned=True,
            **(
                dict(encryption=s3.BucketEncryption.S3_MANAGED)
                if encryption_key is None
                else dict(
                    encryption=s3.BucketEncryption.KMS, encryption_key=encryption_key, bucket_key_enabled=True
                )
            ),
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=f"{log_prefix}/",
            lifecycle_rules=[
                *lifecycle_rules,
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(noncurrent_version_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

"""StorageStack: the trigger bucket (AOI uploads), the masks bucket and the results table.

Key schema and billing mode come from ``looking_glass.resources.table_definition``, the same
definition the embedded run creates, so the cloud table and the laptop table cannot drift.
Physical names are left to CloudFormation; processes find them through the ENV_* variables.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from looking_glass import resources

from .nag import acknowledge

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def table_keys() -> tuple[dynamodb.Attribute, dynamodb.Attribute]:
    """Partition and sort key attributes, read from ``resources.table_definition``."""
    definition = resources.table_definition("looking-glass-results")
    types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}
    by_role = {k["KeyType"]: k["AttributeName"] for k in definition["KeySchema"]}
    if by_role != {"HASH": resources.TABLE_PARTITION_KEY, "RANGE": resources.TABLE_SORT_KEY}:
        raise ValueError(f"table_definition key schema {by_role} does not match the key constants")
    if definition["BillingMode"] != "PAY_PER_REQUEST":
        raise ValueError(f"table_definition billing mode {definition['BillingMode']} is not supported")
    return tuple(  # type: ignore[return-value]
        dynamodb.Attribute(name=by_role[role], type=_ATTRIBUTE_TYPES[types[by_role[role]]])
        for role in ("HASH", "RANGE")
    )


def add_global_indexes(table: dynamodb.Table) -> None:
    """The global secondary indexes of ``resources.table_definition`` (e.g. the jobs index)."""
    definition = resources.table_definition("looking-glass-results")
    types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}
    for index in definition.get("GlobalSecondaryIndexes", []):
        keys = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
        if index["Projection"]["ProjectionType"] != "ALL":
            raise ValueError(f"index {index['IndexName']}: only ALL projections are supported")
        table.add_global_secondary_index(
            index_name=index["IndexName"],
            partition_key=dynamodb.Attribute(name=keys["HASH"], type=_ATTRIBUTE_TYPES[types[keys["HASH"]]]),
            sort_key=dynamodb.Attribute(name=keys["RANGE"], type=_ATTRIBUTE_TYPES[types[keys["RANGE"]]]),
            projection_type=dynamodb.ProjectionType.ALL,
        )


class StorageStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # Target of the server access logs of the two data buckets.
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,  # log delivery requires SSE-S3
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_logs_bucket,
            "AwsSolutions-S1",
            "This is the server access log target; logging its own access would recurse.",
        )

        # AOIs are uploaded here; objects under TRIGGER_PREFIX with TRIGGER_SUFFIX start a job.
        # Versioned: the job id is derived from bucket/key/version, so a re-upload is a new job.
        self.trigger_bucket = s3.Bucket(
            self,
            "TriggerBucket",
            versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="trigger/",
            lifecycle_rules=[
                s3.LifecycleRule(noncurrent_version_expiration=Duration.days(90)),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        # Per-tile building masks written by the workers.
        self.masks_bucket = s3.Bucket(
            self,
            "MasksBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="masks/",
            removal_policy=RemovalPolicy.RETAIN,
        )

        partition_key, sort_key = table_keys()
        self.results_table = dynamodb.Table(
            self,
            "ResultsTable",
            partition_key=partition_key,
            sort_key=sort_key,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.RETAIN,
        )
        add_global_indexes(self.results_table)

        CfnOutput(self, "TriggerBucketName", value=self.trigger_bucket.bucket_name,
                  description=f"Upload AOIs as s3://<this>/{resources.TRIGGER_PREFIX}<name>{resources.TRIGGER_SUFFIX}")
        CfnOutput(self, "MasksBucketName", value=self.masks_bucket.bucket_name)
        CfnOutput(self, "ResultsTableName", value=self.results_table.table_name)


"""StorageStack: the trigger bucket (AOI uploads), the masks bucket, their access-log bucket and
the results table (on demand, point-in-time recovery, deletion protection, retained).

Key schema and billing mode come from ``looking_glass.runtime.resources.table_definition``, the same
definition the embedded run creates, so the cloud table and the laptop table cannot drift.
Physical names are left to CloudFormation; processes find them through the ENV_* variables.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from looking_glass.runtime import resources

from .config import DeploymentConfig
from .constructs import AccessLogBucket, SecureBucket
from .constructs.encryption import data_key

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
    """The trigger, masks and access-log buckets and the results table; outputs their names.
    With ``encryption=kms``, also the deployment's key ``data_key`` (``DataKey``, see
    ``stacks.constructs.encryption``), which encrypts the data buckets and the table here and the
    stores of the other stacks."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.data_key = key = data_key(self, config)

        # Target of the server access logs of the data buckets of this stack.
        self.access_logs_bucket = AccessLogBucket(self, "AccessLogsBucket")

        # AOIs are uploaded here; objects under TRIGGER_PREFIX with TRIGGER_SUFFIX start a job.
        # Versioned: the job id is derived from bucket/key/version, so a re-upload is a new job.
        self.trigger_bucket = SecureBucket(
            self, "TriggerBucket", access_logs=self.access_logs_bucket, log_prefix="trigger",
            encryption_key=key,
        )

        # Per-tile building masks written by the workers.
        self.masks_bucket = SecureBucket(
            self, "MasksBucket", access_logs=self.access_logs_bucket, log_prefix="masks",
            noncurrent_version_days=30, encryption_key=key,
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
            **(
                dict(encryption=dynamodb.TableEncryption.AWS_MANAGED)
                if key is None
                else dict(encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=key)
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        add_global_indexes(self.results_table)

        CfnOutput(self, resources.OUTPUT_TRIGGER_BUCKET, value=self.trigger_bucket.bucket_name,
                  description=f"Upload AOIs as s3://<this>/{resources.TRIGGER_PREFIX}<name>{resources.TRIGGER_SUFFIX}")
        CfnOutput(self, resources.OUTPUT_MASKS_BUCKET, value=self.masks_bucket.bucket_name)
        CfnOutput(self, resources.OUTPUT_RESULTS_TABLE, value=self.results_table.table_name)
        if key is not None:
            CfnOutput(self, "DataKeyArn", value=key.key_arn,
                      description="The key of the deployment's stores (encryption=kms)")


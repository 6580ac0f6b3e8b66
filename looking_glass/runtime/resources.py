"""The one definition of the AWS resources Looking Glass needs.

The CDK stacks (``stacks/``) and the embedded run (``looking_glass.local.embedded``) both read this
module, so names, key schema, queue settings and the trigger filter cannot drift between the
cloud and a laptop. Code finds the resources through the environment variables named here.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

# Results table: one item per job (sort key JOB_SORT_KEY) and one per tile pack (PACK_SORT_PREFIX +
# the quadkey of the tiles' ancestor three levels up: up to 64 tiles, looking_glass.pipeline.packs),
# so a rollup to any coarser zoom is a key-range query on the sort key. Tables written by workers
# before the packs hold one item per tile (TILE_SORT_PREFIX + quadkey), still read.
TABLE_PARTITION_KEY = "job_id"
TABLE_SORT_KEY = "sort_key"
JOB_SORT_KEY = "job"
TILE_SORT_PREFIX = "tile#"
PACK_SORT_PREFIX = "pack#"

# `looking-glass jobs` lists jobs without scanning: a sparse global secondary index on an
# attribute only job items carry (store.create_job writes it), sorted by creation time.
JOBS_INDEX_NAME = "jobs-by-created"
JOBS_INDEX_PARTITION_KEY = "jobs_index"
JOBS_INDEX_PARTITION_VALUE = "job"
JOBS_INDEX_SORT_KEY = "created_at"

# AOIs are uploaded under this prefix; only these objects trigger the enumerator.
TRIGGER_PREFIX = "aoi/"
TRIGGER_SUFFIX = ".geojson"

# A work unit (one SQS message, about one inference batch of tiles) must finish within this;
# the worker extends it for slow batches.
TILE_QUEUE_VISIBILITY_TIMEOUT_S = 600
# After this many receives a message moves to the dead-letter queue.
TILE_QUEUE_MAX_RECEIVE_COUNT = 5
QUEUE_RETENTION_S = 14 * 24 * 3600

# Environment variables through which every process finds its resources.
ENV_TRIGGER_BUCKET = "LG_TRIGGER_BUCKET"
ENV_MASKS_BUCKET = "LG_MASKS_BUCKET"
ENV_RESULTS_TABLE = "LG_RESULTS_TABLE"
ENV_TILE_QUEUE_URL = "LG_TILE_QUEUE_URL"
ENV_TILE_DLQ_URL = "LG_TILE_DLQ_URL"
# Name (not value) of the Secrets Manager secret holding the imagery token, if the tile server
# needs one (cdk.json `imagery_secret_name`); the worker role may read only that secret.
ENV_IMAGERY_SECRET = "LG_IMAGERY_SECRET"
# The deployment (stack name prefix) a process belongs to: the dimension of its custom metrics.
ENV_DEPLOYMENT = "LG_DEPLOYMENT"

# Custom CloudWatch metrics, written as Embedded Metric Format log lines (looking_glass.pipeline.telemetry)
# and read by the monitoring dashboard (stacks/monitoring.py).
METRICS_NAMESPACE = "LookingGlass"
METRIC_DIMENSION_DEPLOYMENT = "Deployment"
# Tiles that got their final stored result (any outcome), counted once per tile.
METRIC_TILES_DONE = "TilesDone"


# A deployment is a set of CloudFormation stacks named <stack name><suffix>; `--stack NAME` in
# the CLI reads their outputs (looking_glass.local.deployment). The stacks declare exactly these
# output keys, so the CLI and the stacks share one contract.
DEFAULT_STACK_NAME = "LookingGlass"
STACK_SUFFIXES = ("Storage", "Inference", "Ingest", "Training", "Monitoring")
# CloudFormation: a stack name has only letters, digits and hyphens, starts with a letter and is
# at most 128 characters (CreateStack's StackName). The deployment's name is a prefix of every
# stack name, so it may be at most 128 minus the longest suffix ("Monitoring": 118 characters).
CLOUDFORMATION_STACK_NAME_MAX = 128
STACK_NAME_MAX = CLOUDFORMATION_STACK_NAME_MAX - max(len(suffix) for suffix in STACK_SUFFIXES)
STACK_NAME_PATTERN = re.compile(rf"^[A-Za-z][A-Za-z0-9-]{{0,{STACK_NAME_MAX - 1}}}$")
OUTPUT_TRIGGER_BUCKET = "TriggerBucketName"
OUTPUT_MASKS_BUCKET = "MasksBucketName"
OUTPUT_RESULTS_TABLE = "ResultsTableName"
OUTPUT_TILE_QUEUE_URL = "TileQueueUrl"
OUTPUT_TILE_DLQ_URL = "TileDeadLetterQueueUrl"
OUTPUT_TRAINING_BUCKET = "TrainingBucketName"
OUTPUT_TRAINING_STATE_MACHINE = "TrainingStateMachineArn"
OUTPUT_DASHBOARD_URL = "DashboardUrl"
# The workers' Batch job queue and job definition (the ARN of the current revision: a redeploy
# that changes the definition registers a new one and makes the old one inactive); `retry
# --stack` submits its workers with these.
OUTPUT_JOB_QUEUE = "JobQueueArn"
OUTPUT_JOB_DEFINITION = "JobDefinitionArn"
# The SSM parameter of the active model the workers read (absent when model_s3_uri pins one).
OUTPUT_ACTIVE_MODEL_PARAMETER = "ActiveModelParameterName"
# The model_s3_uri a stack pins (absent otherwise): `submit --stack` records it as the job's model.
OUTPUT_PINNED_MODEL = "PinnedModelUri"
# The imagery registry (runtime.imagery_sources.ImageryRegistry as JSON): the sources jobs may
# name with their definitions, so `submit --stack` checks names and computes job identities.
OUTPUT_IMAGERY_SOURCES = "ImagerySources"


@dataclass(frozen=True)
class ResourceNames:
    """Physical names. In the cloud CDK fills these from the deployed resources."""

    trigger_bucket: str
    masks_bucket: str
    results_table: str
    tile_queue: str
    tile_dlq: str
    # Embedded only: moto delivers S3 notifications to SQS, and a local poller plays Lambda.
    aoi_events_queue: str

    @classmethod
    def for_prefix(cls, prefix: str = "looking-glass") -> "ResourceNames":
        """The embedded run's names: ``<prefix>-trigger``, ``<prefix>-masks``, ..."""
        return cls(
            trigger_bucket=f"{prefix}-trigger",
            masks_bucket=f"{prefix}-masks",
            results_table=f"{prefix}-results",
            tile_queue=f"{prefix}-tiles",
            tile_dlq=f"{prefix}-tiles-dlq",
            aoi_events_queue=f"{prefix}-aoi-events",
        )


def table_definition(table_name: str) -> dict:
    """Arguments for DynamoDB CreateTable (the CDK table uses the same keys)."""
    return {
        "TableName": table_name,
        "KeySchema": [
            {"AttributeName": TABLE_PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": TABLE_SORT_KEY, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": TABLE_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": TABLE_SORT_KEY, "AttributeType": "S"},
            {"AttributeName": JOBS_INDEX_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": JOBS_INDEX_SORT_KEY, "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": JOBS_INDEX_NAME,
                "KeySchema": [
                    {"AttributeName": JOBS_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": JOBS_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},  # job items only: small
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


@dataclass(frozen=True)
class DeployedResources:
    """Where a running process finds the resources: bucket names, table name, queue URLs."""

    trigger_bucket: str
    masks_bucket: str
    results_table: str
    tile_queue_url: str
    tile_dlq_url: str

    def to_env(self) -> dict[str, str]:
        """The ``LG_*`` environment variables through which a process finds these resources."""
        return {
            ENV_TRIGGER_BUCKET: self.trigger_bucket,
            ENV_MASKS_BUCKET: self.masks_bucket,
            ENV_RESULTS_TABLE: self.results_table,
            ENV_TILE_QUEUE_URL: self.tile_queue_url,
            ENV_TILE_DLQ_URL: self.tile_dlq_url,
        }

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "DeployedResources":
        """The resources named by the ``LG_*`` variables of ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        keys = {
            "trigger_bucket": ENV_TRIGGER_BUCKET,
            "masks_bucket": ENV_MASKS_BUCKET,
            "results_table": ENV_RESULTS_TABLE,
            "tile_queue_url": ENV_TILE_QUEUE_URL,
            "tile_dlq_url": ENV_TILE_DLQ_URL,
        }
        missing = [var for var in keys.values() if not env.get(var)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(**{field: env[var] for field, var in keys.items()})


# Deliveries of one S3 event to the embedded run's enumerator before it goes to the events DLQ,
# and how long a failed delivery waits before the next.
AOI_EVENTS_MAX_RECEIVE_COUNT = 3
AOI_EVENTS_VISIBILITY_TIMEOUT_S = 10


def create_embedded_resources(session, names: ResourceNames) -> DeployedResources:
    """Create every resource on an (embedded) AWS endpoint. Idempotent."""
    s3 = session.client("s3")
    sqs = session.client("sqs")
    ddb = session.client("dynamodb")

    for bucket in (names.trigger_bucket, names.masks_bucket):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(
        Bucket=names.trigger_bucket, VersioningConfiguration={"Status": "Enabled"}
    )

    dlq_url = sqs.create_queue(
        QueueName=names.tile_dlq,
        Attributes={"MessageRetentionPeriod": str(QUEUE_RETENTION_S)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    tile_queue_url = sqs.create_queue(
        QueueName=names.tile_queue,
        Attributes={
            "VisibilityTimeout": str(TILE_QUEUE_VISIBILITY_TIMEOUT_S),
            "MessageRetentionPeriod": str(QUEUE_RETENTION_S),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": TILE_QUEUE_MAX_RECEIVE_COUNT}
            ),
        },
    )["QueueUrl"]

    # The embedded run's "Lambda" event source: an event whose handler keeps failing moves to its
    # dead-letter queue after AOI_EVENTS_MAX_RECEIVE_COUNT deliveries, never redelivered forever
    # (the deployed Lambda's retries and on-failure destination do the same).
    events_dlq_url = sqs.create_queue(
        QueueName=f"{names.aoi_events_queue}-dlq",
        Attributes={"MessageRetentionPeriod": str(QUEUE_RETENTION_S)},
    )["QueueUrl"]
    events_dlq_arn = sqs.get_queue_attributes(QueueUrl=events_dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events_url = sqs.create_queue(
        QueueName=names.aoi_events_queue,
        Attributes={
            "VisibilityTimeout": str(AOI_EVENTS_VISIBILITY_TIMEOUT_S),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": events_dlq_arn, "maxReceiveCount": AOI_EVENTS_MAX_RECEIVE_COUNT}
            ),
        },
    )["QueueUrl"]
    events_arn = sqs.get_queue_attributes(QueueUrl=events_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=names.trigger_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": events_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": TRIGGER_PREFIX},
                                {"Name": "suffix", "Value": TRIGGER_SUFFIX},
                            ]
                        }
                    },
                }
            ]
        },
    )

    existing = ddb.list_tables()["TableNames"]
    if names.results_table not in existing:
        ddb.create_table(**table_definition(names.results_table))
        ddb.get_waiter("table_exists").wait(TableName=names.results_table)

    return DeployedResources(
        trigger_bucket=names.trigger_bucket,
        masks_bucket=names.masks_bucket,
        results_table=names.results_table,
        tile_queue_url=tile_queue_url,
        tile_dlq_url=dlq_url,
    )

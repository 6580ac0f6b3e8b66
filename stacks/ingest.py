"""IngestStack: the tile-enumerator Lambda, started by AOI uploads to the trigger bucket.

The Lambda (``lambdas/tile_enumerator/handler.py``) validates the AOI, writes the job record,
enqueues the tile work units and submits the Batch array job of workers.
"""

from __future__ import annotations

from aws_cdk import AssetHashType, CfnOutput, Duration, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from looking_glass.runtime import resources

from .assets import LAMBDA_PYTHON_VERSION, stage_lambda_asset
from .config import DeploymentConfig
from .constructs import grant_table_data
from .environment import enumerator_environment, resource_environment
from .constructs import terminal_queue
from .nag import (
    LAMBDA_BASIC_EXECUTION,
    TRIGGER_BUCKET_ARN_OUTPUT,
    acknowledge,
    cross_stack_output,
)

HANDLER = "lambdas.tile_enumerator.handler.handler"
# The runtime the asset's compiled dependencies are installed for (stacks.assets).
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12
if LAMBDA_RUNTIME.name != f"python{LAMBDA_PYTHON_VERSION}":
    raise RuntimeError(f"{LAMBDA_RUNTIME.name} does not match the asset's CPython {LAMBDA_PYTHON_VERSION}")


class IngestStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        trigger_bucket: s3.IBucket,
        masks_bucket: s3.IBucket,
        results_table: dynamodb.ITable,
        tile_queue: sqs.IQueue,
        tile_dlq: sqs.IQueue,
        job_queue: batch.IJobQueue,
        job_definition: batch.IJobDefinition,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # Async invocations (S3 events) that still fail after Lambda's retries land here.
        self.failure_queue, self.failure_alarm = terminal_queue(
            self,
            "EnumeratorFailures",
            nag_reason=(
                "This queue is itself the terminal on-failure destination of the enumerator; an "
                "alarm watches its depth and nothing consumes it automatically."
            ),
            alarm_description=(
                "An AOI upload could not be processed after Lambda's retries (infrastructure "
                "error). The failed event is in the enumerator failure queue."
            ),
        )

        log_group = logs.LogGroup(self, "EnumeratorLogs", retention=config.log_retention)

        # Code: looking_glass/ and lambdas/ plus the core dependencies as manylinux wheels for
        # CPython 3.12 (stacks.assets), staged at synth time, no Docker. The directory name is
        # its content hash, so CDK does not hash ~70 MB of dependencies again on every synth.
        asset = stage_lambda_asset()
        self.log_group = log_group
        self.function = lambda_.Function(
            self,
            "TileEnumerator",
            runtime=LAMBDA_RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(
                str(asset), asset_hash=asset.name, asset_hash_type=AssetHashType.CUSTOM
            ),
            memory_size=1024,
            timeout=Duration.minutes(15),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            environment={
                **resource_environment(
                    trigger_bucket=trigger_bucket,
                    masks_bucket=masks_bucket,
                    results_table=results_table,
                    tile_queue=tile_queue,
                    tile_dlq=tile_dlq,
                ),
                **enumerator_environment(
                    config,
                    job_queue_arn=job_queue.job_queue_arn,
                    job_definition_arn=job_definition.job_definition_arn,
                ),
                "POWERTOOLS_SERVICE_NAME": "tile-enumerator",
            },
            # Caps concurrent enumerations (each may submit Batch jobs); S3 events beyond it wait
            # in Lambda's async queue and are retried up to max_event_age. 0: no reservation.
            reserved_concurrent_executions=config.enumerator_reserved_concurrency or None,
            retry_attempts=2,
            max_event_age=Duration.hours(6),
            on_failure=destinations.SqsDestination(self.failure_queue),
            description="Looking Glass: AOI upload -> job record, tile work units, Batch workers",
        )

        # Only the AOI objects (HeadObject/GetObject, of a given version).
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[trigger_bucket.arn_for_objects(f"{resources.TRIGGER_PREFIX}*")],
            )
        )
        grant_table_data(results_table, self.function)
        tile_queue.grant_send_messages(self.function)
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["batch:SubmitJob"],
                resources=[job_queue.job_queue_arn, job_definition.job_definition_arn],
            )
        )

        # The notification is added through an imported reference to the bucket so that it lives
        # in this stack: on the StorageStack's bucket it would make StorageStack depend on this
        # Lambda while this stack depends on StorageStack (a cycle). CDK manages it with a custom
        # resource that only touches the notifications it created.
        notified_bucket = s3.Bucket.from_bucket_attributes(
            self,
            "TriggerBucketRef",
            bucket_arn=trigger_bucket.bucket_arn,
            bucket_name=trigger_bucket.bucket_name,
        )
        notified_bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(self.function),
            s3.NotificationKeyFilter(prefix=resources.TRIGGER_PREFIX, suffix=resources.TRIGGER_SUFFIX),
        )

        self._acknowledge_nag_findings(trigger_bucket)

        CfnOutput(self, "EnumeratorFunctionName", value=self.function.function_name)
        CfnOutput(self, "EnumeratorFailureQueueUrl", value=self.failure_queue.queue_url)

    def _acknowledge_nag_findings(self, trigger_bucket: s3.IBucket) -> None:
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to Python 3.12: the asset's compiled dependencies (numpy, shapely) are "
            "installed as cp312 manylinux wheels (stacks.assets.LAMBDA_PYTHON_VERSION); a newer "
            "runtime means changing both together.",
        )
        acknowledge(
            self.function,
            LAMBDA_BASIC_EXECUTION,
            "AWSLambdaBasicExecutionRole only allows writing the function's CloudWatch logs.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM5[Resource::*]",
            "xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing) have no "
            "resource-level permissions.",
        )
        trigger_arn = cross_stack_output(Stack.of(trigger_bucket).stack_name, TRIGGER_BUCKET_ARN_OUTPUT)
        acknowledge(
            self.function,
            f"AwsSolutions-IAM5[Resource::{trigger_arn}/{resources.TRIGGER_PREFIX}*]",
            "The enumerator reads whichever AOI was uploaded, so it may read (only) the objects "
            "under the trigger prefix.",
        )
        # CDK's singleton handler for bucket notifications (one per stack).
        handler = self.node.try_find_child("BucketNotificationsHandler050a0587b7544547bf325f094a3db834")
        if handler is not None:
            acknowledge(
                handler,
                LAMBDA_BASIC_EXECUTION,
                "CDK's bucket-notification custom resource handler; the managed policy only "
                "allows writing its CloudWatch logs.",
            )

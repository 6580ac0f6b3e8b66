"""The tile-enumerator Lambda (``lambdas/tile_enumerator/handler.py``), started by AOI uploads to
the trigger bucket: it validates the AOI, writes the job record, enqueues the tile work units
and submits the Batch array job of workers.
"""

from __future__ import annotations

from aws_cdk import AssetHashType, Duration, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from looking_glass.runtime import resources

from ..assets import LAMBDA_PYTHON_VERSION, stage_lambda_asset
from ..config import DeploymentConfig
from ..environment import enumerator_environment, resource_environment
from ..nag import LAMBDA_BASIC_EXECUTION, TRIGGER_BUCKET_ARN_OUTPUT, acknowledge, cross_stack_output
from .encryption import grant_key_use, grant_send, without_key
from .grants import ENUMERATOR_TABLE_ACTIONS, grant_table_data
from .queues import terminal_queue

HANDLER = "lambdas.tile_enumerator.handler.handler"
# The runtime the asset's compiled dependencies are installed for (stacks.assets).
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12
if LAMBDA_RUNTIME.name != f"python{LAMBDA_PYTHON_VERSION}":
    raise RuntimeError(f"{LAMBDA_RUNTIME.name} does not match the asset's CPython {LAMBDA_PYTHON_VERSION}")
# The Lambda's timeout; the EnumeratorNearTimeout alarm (stacks.constructs.alarms) watches it.
ENUMERATOR_TIMEOUT = Duration.minutes(15)
# CDK's singleton handler for bucket notifications (one per stack).
BUCKET_NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


class TileEnumerator:
    """The function ``TileEnumerator`` with its log group ``EnumeratorLogs``, its on-failure
    queue ``EnumeratorFailures`` (alarm ``EnumeratorFailuresNotEmpty``), its permissions and the
    S3 notification of AOI uploads, added to ``scope`` (see ``stacks.constructs``)."""

    def __init__(
        self,
        scope: Construct,
        *,
        config: DeploymentConfig,
        key: kms.IKey | None = None,
        trigger_bucket: s3.IBucket,
        masks_bucket: s3.IBucket,
        results_table: dynamodb.ITable,
        tile_queue: sqs.IQueue,
        tile_dlq: sqs.IQueue,
        job_queue: batch.IJobQueue,
        job_definition: batch.IJobDefinition,
    ) -> None:
        self._scope = scope
        # Async invocations (S3 events) that still fail after Lambda's retries land here.
        self.failure_queue, self.failure_alarm = terminal_queue(
            scope,
            "EnumeratorFailures",
            nag_reason=(
                "This queue is itself the terminal on-failure destination of the enumerator; an "
                "alarm watches its depth and nothing consumes it automatically."
            ),
            alarm_description=(
                "An AOI upload could not be processed after Lambda's retries (infrastructure "
                "error). The failed event is in the enumerator failure queue."
            ),
            key=key,
        )

        self.log_group = logs.LogGroup(
            scope, "EnumeratorLogs", retention=config.log_retention, encryption_key=key
        )
        # CDK's SqsDestination grants on the queue itself (with kms:Encrypt and ReEncrypt on its
        # key); given a reference that knows no key, it grants sqs:SendMessage only and the key
        # use is granted below as a producer's.
        failure_destination = (
            self.failure_queue if key is None else without_key(scope, "EnumeratorFailuresRef", self.failure_queue)
        )

        # Code: looking_glass/ and lambdas/ plus the core dependencies as manylinux wheels for
        # CPython 3.12 (stacks.assets), staged at synth time, no Docker. The directory name is
        # its content hash, so CDK does not hash ~70 MB of dependencies again on every synth.
        asset = stage_lambda_asset()
        self.function = lambda_.Function(
            scope,
            "TileEnumerator",
            runtime=LAMBDA_RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(
                str(asset), asset_hash=asset.name, asset_hash_type=AssetHashType.CUSTOM
            ),
            memory_size=1024,
            timeout=ENUMERATOR_TIMEOUT,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
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
            on_failure=destinations.SqsDestination(failure_destination),
            environment_encryption=key,
            description="Looking Glass: AOI upload -> job record, tile work units, Batch workers",
        )

        # Only the AOI objects (HeadObject/GetObject, of a given version).
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[trigger_bucket.arn_for_objects(f"{resources.TRIGGER_PREFIX}*")],
            )
        )
        grant_table_data(results_table, self.function, ENUMERATOR_TABLE_ACTIONS)
        grant_send(tile_queue, self.function, key)
        # The AOI object, the table, the failure queue (as the on-failure destination).
        grant_key_use(key, self.function, ["s3-read", "dynamodb", "sqs-send"])
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["batch:SubmitJob"],
                resources=[job_queue.job_queue_arn, job_definition.job_definition_arn],
            )
        )
        self._notify_on_upload(trigger_bucket)
        self._acknowledge_nag_findings(trigger_bucket)

    def _notify_on_upload(self, trigger_bucket: s3.IBucket) -> None:
        # The notification is added through an imported reference to the bucket so that it lives
        # in this stack: on the StorageStack's bucket it would make StorageStack depend on this
        # Lambda while this stack depends on StorageStack (a cycle). CDK manages it with a custom
        # resource that only touches the notifications it created.
        notified_bucket = s3.Bucket.from_bucket_attributes(
            self._scope,
            "TriggerBucketRef",
            bucket_arn=trigger_bucket.bucket_arn,
            bucket_name=trigger_bucket.bucket_name,
        )
        notified_bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(self.function),
            s3.NotificationKeyFilter(prefix=resources.TRIGGER_PREFIX, suffix=resources.TRIGGER_SUFFIX),
        )

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
        handler = Stack.of(self._scope).node.try_find_child(BUCKET_NOTIFICATIONS_HANDLER)
        if handler is not None:
            acknowledge(
                handler,
                LAMBDA_BASIC_EXECUTION,
                "CDK's bucket-notification custom resource handler; the managed policy only "
                "allows writing its CloudWatch logs.",
            )

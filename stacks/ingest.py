"""IngestStack: the tile-enumerator Lambda, started by AOI uploads to the trigger bucket.

The Lambda (``lambdas/tile_enumerator/handler.py``) validates the AOI, writes the job record,
enqueues the tile work units and submits the Batch array job of workers.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .config import DeploymentConfig
from .constructs.enumerator import HANDLER, LAMBDA_RUNTIME, TileEnumerator

__all__ = ["HANDLER", "LAMBDA_RUNTIME", "IngestStack"]


class IngestStack(Stack):
    """The tile enumerator (``TileEnumerator``) on the trigger bucket's AOI uploads; outputs the
    function's name and its failure queue's URL."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
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
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        enumerator = TileEnumerator(
            self,
            config=config,
            key=key,
            trigger_bucket=trigger_bucket,
            masks_bucket=masks_bucket,
            results_table=results_table,
            tile_queue=tile_queue,
            tile_dlq=tile_dlq,
            job_queue=job_queue,
            job_definition=job_definition,
        )
        self.function = enumerator.function
        self.log_group = enumerator.log_group
        self.failure_queue = enumerator.failure_queue
        self.failure_alarm = enumerator.failure_alarm

        CfnOutput(self, "EnumeratorFunctionName", value=self.function.function_name)
        CfnOutput(self, "EnumeratorFailureQueueUrl", value=self.failure_queue.queue_url)

"""InferenceStack: the tile work queue and its dead-letter queue, the VPC, and the AWS Batch GPU
environment that runs the inference worker (``batch_jobs/worker/main.py``).

Queue settings come from ``looking_glass.runtime.resources`` (the embedded run uses the same ones).
Workers are array jobs submitted by the enumerator Lambda; each drains the queue and exits when
it stays empty, so the compute environment scales from 0 vCPUs back to 0.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from looking_glass.runtime import resources

from .config import DeploymentConfig
from .constructs import BatchWorkers, TileQueues, WorkerNetwork
from .environment import active_model_parameter, imagery_registry


class InferenceStack(Stack):
    """Tile queues (``TileQueues``), the workers' VPC (``WorkerNetwork``) and the Batch GPU workers
    (``BatchWorkers``); outputs the queue URLs, the job queue and the job definition."""

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
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        queues = TileQueues(self, key=key)
        self.tile_queue = queues.queue
        self.tile_dlq = queues.dead_letter_queue
        self.dlq_alarm = queues.dead_letter_alarm

        network = WorkerNetwork(self, config=config, key=key)
        self.vpc = network.vpc

        workers = BatchWorkers(
            self,
            config=config,
            key=key,
            vpc=network.vpc,
            subnets=network.worker_subnets,
            trigger_bucket=trigger_bucket,
            masks_bucket=masks_bucket,
            results_table=results_table,
            tile_queue=self.tile_queue,
            tile_dlq=self.tile_dlq,
        )
        self.compute_environment = workers.compute_environment
        self.launch_template = workers.launch_template
        self.job_queue = workers.job_queue
        self.job_role = workers.job_role
        self.log_group = workers.log_group
        self.worker_container = workers.container
        self.job_definition = workers.job_definition
        if workers.imagery_secret is not None:
            self.imagery_secret = workers.imagery_secret

        CfnOutput(self, resources.OUTPUT_TILE_QUEUE_URL, value=self.tile_queue.queue_url)
        CfnOutput(self, resources.OUTPUT_TILE_DLQ_URL, value=self.tile_dlq.queue_url)
        CfnOutput(self, resources.OUTPUT_JOB_QUEUE, value=self.job_queue.job_queue_arn)
        CfnOutput(self, resources.OUTPUT_JOB_DEFINITION, value=self.job_definition.job_definition_arn)
        CfnOutput(self, resources.OUTPUT_IMAGERY_SOURCES, value=imagery_registry(config).to_json(),
                  description="imagery sources jobs may name, with their definitions (read by submit --stack)")
        if not config.model_s3_uri:  # the workers read the active model (looking-glass models use)
            CfnOutput(self, resources.OUTPUT_ACTIVE_MODEL_PARAMETER, value=active_model_parameter(config),
                      description="SSM parameter naming the active model (s3:// URI of a registered model.keras)")
        else:  # the model every job runs: submit records it on the job and in its identity
            CfnOutput(self, resources.OUTPUT_PINNED_MODEL, value=config.model_s3_uri,
                      description="the model the workers run (model_s3_uri)")

"""MonitoringStack: one CloudWatch dashboard for a deployment, and the alarms that say a job is in
trouble.

Widgets: tile queue depth (waiting and in flight), dead-letter queue depth, tiles done per minute
(the worker's EMF metric, looking_glass.pipeline.telemetry), Batch jobs by status, the enumerator Lambda's
invocations, errors, throttles and duration, and the state of every alarm.

AWS Batch publishes no job metrics of its own, so its "Batch Job State Change" events for this
deployment's job queue are sent by an EventBridge rule to a log group, and a metric filter counts
them by status (``<namespace>/<stack name>`` ``BatchJobs``, dimension ``Status``). The log group
doubles as a searchable history of every worker's life cycle.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from looking_glass.runtime import resources

from .config import DeploymentConfig
from .constructs import BatchJobEvents, DeploymentAlarms, DeploymentDashboard, PipelineMetrics


class MonitoringStack(Stack):
    """Batch job events as metrics (``BatchJobEvents``), the alarms (``DeploymentAlarms``, with
    ``alarms`` of the other stacks) and the dashboard (``DeploymentDashboard``); outputs the
    dashboard's URL."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        key: kms.IKey | None = None,
        tile_queue: sqs.IQueue,
        tile_dlq: sqs.IQueue,
        enumerator: lambda_.IFunction,
        job_queue: batch.IJobQueue,
        alarms: list[cloudwatch.Alarm],
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        batch_jobs = BatchJobEvents(self, config=config, job_queue=job_queue, key=key)
        self.batch_events = batch_jobs.log_group
        metrics = PipelineMetrics(
            config=config, tile_queue=tile_queue, tile_dlq=tile_dlq, enumerator=enumerator
        )
        deployment_alarms = DeploymentAlarms(
            self, config=config, metrics=metrics, batch_jobs=batch_jobs, other_alarms=alarms
        )
        self.alarms = deployment_alarms.alarms
        self.dashboard = DeploymentDashboard(
            self,
            config=config,
            metrics=metrics,
            batch_jobs=batch_jobs,
            alarms=deployment_alarms.every_alarm,
        ).dashboard

        CfnOutput(
            self,
            resources.OUTPUT_DASHBOARD_URL,
            value=(
                f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
                f"#dashboards/dashboard/{config.stack_name}"
            ),
            description="The deployment's CloudWatch dashboard",
        )

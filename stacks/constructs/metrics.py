"""The metrics of a deployment's pipeline that the alarms and the dashboard both read."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs

from looking_glass.runtime import resources

from ..config import DeploymentConfig


class PipelineMetrics:
    """Tile queue depth (waiting, in flight), dead-letter queue depth and tiles done per minute
    (the worker's EMF metric, looking_glass.pipeline.telemetry), per minute; and the queue and the
    enumerator Lambda themselves, for metrics of other periods. Metrics are values, not
    resources: this adds nothing to a stack."""

    def __init__(
        self,
        *,
        config: DeploymentConfig,
        tile_queue: sqs.IQueue,
        tile_dlq: sqs.IQueue,
        enumerator: lambda_.IFunction,
    ) -> None:
        self.tile_queue = tile_queue
        self.tile_dlq = tile_dlq
        self.enumerator = enumerator
        minute = Duration.minutes(1)
        self.queue_waiting = tile_queue.metric_approximate_number_of_messages_visible(
            period=minute, statistic="Maximum", label="waiting"
        )
        self.queue_in_flight = tile_queue.metric_approximate_number_of_messages_not_visible(
            period=minute, statistic="Maximum", label="in flight"
        )
        self.dlq_depth = tile_dlq.metric_approximate_number_of_messages_visible(
            period=minute, statistic="Maximum", label="dead-lettered work units"
        )
        self.tiles_done = cloudwatch.Metric(
            namespace=resources.METRICS_NAMESPACE,
            metric_name=resources.METRIC_TILES_DONE,
            dimensions_map={resources.METRIC_DIMENSION_DEPLOYMENT: config.stack_name},
            statistic="Sum",
            period=minute,
            label="tiles done / minute",
        )

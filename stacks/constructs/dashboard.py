"""One CloudWatch dashboard for a deployment.

Widgets: tile queue depth (waiting and in flight), dead-letter queue depth, tiles done per minute
(the worker's EMF metric, looking_glass.pipeline.telemetry), Batch jobs by status, the enumerator
Lambda's invocations, errors, throttles and duration, and the state of every alarm.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from ..config import DeploymentConfig
from .batch_events import BATCH_STATUSES, BatchJobEvents
from .metrics import PipelineMetrics

WIDGET_HEIGHT = 6


class DeploymentDashboard:
    """The dashboard ``Dashboard`` (named after the deployment, 3 hours shown), added to ``scope``
    (see ``stacks.constructs``): three rows, the pipeline, the Batch jobs and the enumerator,
    then the state of ``alarms``."""

    def __init__(
        self,
        scope: Construct,
        *,
        config: DeploymentConfig,
        metrics: PipelineMetrics,
        batch_jobs: BatchJobEvents,
        alarms: Sequence[cloudwatch.IAlarm],
    ) -> None:
        self.dashboard = cloudwatch.Dashboard(
            scope,
            "Dashboard",
            dashboard_name=config.stack_name,
            default_interval=Duration.hours(3),
        )
        height = WIDGET_HEIGHT
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Tile queue (work units)",
                left=[metrics.queue_waiting, metrics.queue_in_flight],
                width=8,
                height=height,
            ),
            cloudwatch.GraphWidget(
                title="Dead-letter queue", left=[metrics.dlq_depth], width=8, height=height
            ),
            cloudwatch.GraphWidget(
                title="Tiles done per minute", left=[metrics.tiles_done], width=8, height=height
            ),
        )
        enumerator = metrics.enumerator
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Batch worker jobs (per 5 minutes)",
                left=[batch_jobs.jobs(status) for status in BATCH_STATUSES],
                width=8,
                height=height,
            ),
            cloudwatch.GraphWidget(
                title="Enumerator Lambda",
                left=[
                    enumerator.metric_invocations(period=Duration.minutes(5), statistic="Sum"),
                    enumerator.metric_errors(period=Duration.minutes(5), statistic="Sum"),
                    enumerator.metric_throttles(period=Duration.minutes(5), statistic="Sum"),
                ],
                width=8,
                height=height,
            ),
            cloudwatch.GraphWidget(
                title="Enumerator duration (ms)",
                left=[
                    enumerator.metric_duration(period=Duration.minutes(5), statistic=stat, label=stat)
                    for stat in ("Average", "p99", "Maximum")
                ],
                width=8,
                height=height,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=24, height=4)
        )

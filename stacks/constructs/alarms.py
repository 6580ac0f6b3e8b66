"""The alarms that say a job is in trouble: the enumerator fails or nears its timeout, worker jobs
fail, or work waits while no tile gets done. With ``alarm_topic_arn`` set, every alarm of the
deployment (these and those of the other stacks) notifies that SNS topic.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..config import DeploymentConfig
from .batch_events import BatchJobEvents
from .enumerator import ENUMERATOR_TIMEOUT
from .metrics import PipelineMetrics

# No tile finished for this long while the queue holds work: the workers are stuck (no spot
# capacity, no route to the tile server, a crash loop).
STALL_MINUTES = 30


class DeploymentAlarms:
    """The alarms ``EnumeratorErrors``, ``EnumeratorNearTimeout``, ``WorkerJobsFailed`` and
    ``TilesStalled`` (``alarms``), added to ``scope`` (see ``stacks.constructs``), and the SNS
    action of ``alarm_topic_arn`` (imported as ``AlarmTopic``) on them and on ``other_alarms``.
    ``every_alarm``: ``other_alarms`` then these."""

    def __init__(
        self,
        scope: Construct,
        *,
        config: DeploymentConfig,
        metrics: PipelineMetrics,
        batch_jobs: BatchJobEvents,
        other_alarms: Sequence[cloudwatch.Alarm] = (),
    ) -> None:
        self._scope = scope
        self.alarms: list[cloudwatch.Alarm] = []
        enumerator = metrics.enumerator
        self._alarm(
            "EnumeratorErrors",
            alarm_description="The tile enumerator Lambda failed (see its log group); after its "
            "retries the S3 event goes to the enumerator failure queue.",
            metric=enumerator.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        self._alarm(  # ENUMERATOR_TIMEOUT: the Lambda's own (stacks.constructs.enumerator)
            "EnumeratorNearTimeout",
            alarm_description="The slowest enumerations take over 80% of the Lambda timeout: a "
            "larger AOI would time out (lower max_tiles_per_job or split the AOI).",
            metric=enumerator.metric_duration(period=Duration.minutes(15), statistic="Maximum"),
            threshold=ENUMERATOR_TIMEOUT.to_milliseconds() * 0.8,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        self._alarm(
            "WorkerJobsFailed",
            alarm_description="Worker Batch jobs failed (not spot reclaims, which are retried): "
            "see the worker log group; exit code 2 = bad settings, 3 = model not loadable.",
            metric=batch_jobs.jobs("FAILED"),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        self._alarm(
            "TilesStalled",
            alarm_description=f"Work units wait in the tile queue but no tile was done for "
            f"{STALL_MINUTES} minutes: no worker is running or none can make progress (spot "
            "capacity, max_vcpus, the tile server unreachable).",
            metric=_stalled(metrics),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
        )
        self.every_alarm = [*other_alarms, *self.alarms]
        if config.alarm_topic_arn:
            topic = sns.Topic.from_topic_arn(scope, "AlarmTopic", config.alarm_topic_arn)
            for each in self.every_alarm:
                each.add_alarm_action(cw_actions.SnsAction(topic))

    def _alarm(self, construct_id: str, **props) -> cloudwatch.Alarm:
        made = cloudwatch.Alarm(
            self._scope,
            construct_id,
            evaluation_periods=props.pop("evaluation_periods", 1),
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            **props,
        )
        self.alarms.append(made)
        return made


def _stalled(metrics: PipelineMetrics) -> cloudwatch.MathExpression:
    """1 while work units wait in the tile queue and no tile gets done, over half STALL_MINUTES."""
    half = Duration.minutes(STALL_MINUTES // 2)
    return cloudwatch.MathExpression(
        expression="IF(waiting > 0 AND FILL(done, 0) == 0, 1, 0)",
        using_metrics={
            "waiting": metrics.tile_queue.metric_approximate_number_of_messages_visible(
                period=half, statistic="Minimum"
            ),
            "done": metrics.tiles_done.with_(period=half),
        },
        period=half,
        label="work waiting, no tile done",
    )

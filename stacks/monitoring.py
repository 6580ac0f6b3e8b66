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

import jsii
from aws_cdk import ArnFormat, Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from looking_glass.runtime import resources

from .config import DeploymentConfig

BATCH_JOBS_METRIC = "BatchJobs"
BATCH_STATUSES = ("SUBMITTED", "RUNNABLE", "RUNNING", "SUCCEEDED", "FAILED")
# The enumerator's timeout (stacks.ingest): alarm when its slowest runs come close to it.
ENUMERATOR_TIMEOUT = Duration.minutes(15)
# No tile finished for this long while the queue holds work: the workers are stuck (no spot
# capacity, no route to the tile server, a crash loop).
STALL_MINUTES = 30


@jsii.implements(events.IRuleTarget)
class _LogGroupTarget:
    """An EventBridge target writing events to a log group, with a plain CloudFormation resource
    policy (``events_targets.CloudWatchLogGroup`` installs it through a custom-resource Lambda)."""

    def __init__(self, log_group: logs.LogGroup) -> None:
        self.log_group = log_group

    def bind(self, rule: events.IRule, id: str | None = None) -> events.RuleTargetConfig:  # noqa: A002
        stack = Stack.of(self.log_group)
        return events.RuleTargetConfig(
            arn=stack.format_arn(
                service="logs",
                resource="log-group",
                resource_name=self.log_group.log_group_name,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            ),
            target_resource=self.log_group,
        )


class MonitoringStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        tile_queue: sqs.IQueue,
        tile_dlq: sqs.IQueue,
        enumerator: lambda_.IFunction,
        job_queue: batch.IJobQueue,
        alarms: list[cloudwatch.Alarm],
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        namespace = resources.METRICS_NAMESPACE
        deployment = {resources.METRIC_DIMENSION_DEPLOYMENT: config.stack_name}
        batch_namespace = f"{resources.METRICS_NAMESPACE}/{config.stack_name}"

        # --- Batch job events -> log group -> metric ---------------------------------------------
        self.batch_events = logs.LogGroup(
            self,
            "BatchJobEvents",
            log_group_name=f"/aws/events/{config.stack_name}-batch-jobs",
            retention=config.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        logs.CfnResourcePolicy(
            self,
            "BatchJobEventsPolicy",
            policy_name=f"{config.stack_name}-batch-job-events",
            policy_document=self.to_json_string(
                iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            principals=[
                                iam.ServicePrincipal("events.amazonaws.com"),
                                iam.ServicePrincipal("delivery.logs.amazonaws.com"),
                            ],
                            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                            resources=[self.batch_events.log_group_arn],
                        )
                    ]
                ).to_json()
            ),
        )
        events.Rule(
            self,
            "BatchJobStateChanges",
            description="Looking Glass: state changes of this deployment's worker jobs",
            event_pattern=events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={"jobQueue": [job_queue.job_queue_arn]},
            ),
            targets=[_LogGroupTarget(self.batch_events)],
        )
        logs.MetricFilter(
            self,
            "BatchJobsByStatus",
            log_group=self.batch_events,
            filter_pattern=logs.FilterPattern.exists("$.detail.status"),
            metric_namespace=batch_namespace,
            metric_name=BATCH_JOBS_METRIC,
            metric_value="1",
            dimensions={"Status": "$.detail.status"},
            unit=cloudwatch.Unit.COUNT,
        )

        def batch_jobs(status: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=batch_namespace,
                metric_name=BATCH_JOBS_METRIC,
                dimensions_map={"Status": status},
                statistic="Sum",
                period=Duration.minutes(5),
                label=status,
            )

        # --- Metrics -------------------------------------------------------------------------------
        minute = Duration.minutes(1)
        queue_waiting = tile_queue.metric_approximate_number_of_messages_visible(
            period=minute, statistic="Maximum", label="waiting"
        )
        queue_in_flight = tile_queue.metric_approximate_number_of_messages_not_visible(
            period=minute, statistic="Maximum", label="in flight"
        )
        dlq_depth = tile_dlq.metric_approximate_number_of_messages_visible(
            period=minute, statistic="Maximum", label="dead-lettered work units"
        )
        tiles_done = cloudwatch.Metric(
            namespace=namespace,
            metric_name=resources.METRIC_TILES_DONE,
            dimensions_map=deployment,
            statistic="Sum",
            period=minute,
            label="tiles done / minute",
        )

        # --- Alarms --------------------------------------------------------------------------------
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(construct_id: str, **props) -> cloudwatch.Alarm:
            made = cloudwatch.Alarm(
                self,
                construct_id,
                evaluation_periods=props.pop("evaluation_periods", 1),
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                **props,
            )
            self.alarms.append(made)
            return made

        alarm(
            "EnumeratorErrors",
            alarm_description="The tile enumerator Lambda failed (see its log group); after its "
            "retries the S3 event goes to the enumerator failure queue.",
            metric=enumerator.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        alarm(
            "EnumeratorNearTimeout",
            alarm_description="The slowest enumerations take over 80% of the Lambda timeout: a "
            "larger AOI would time out (lower max_tiles_per_job or split the AOI).",
            metric=enumerator.metric_duration(period=Duration.minutes(15), statistic="Maximum"),
            threshold=ENUMERATOR_TIMEOUT.to_milliseconds() * 0.8,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        alarm(
            "WorkerJobsFailed",
            alarm_description="Worker Batch jobs failed (not spot reclaims, which are retried): "
            "see the worker log group; exit code 2 = bad settings, 3 = model not loadable.",
            metric=batch_jobs("FAILED"),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        stalled = cloudwatch.MathExpression(
            expression="IF(waiting > 0 AND FILL(done, 0) == 0, 1, 0)",
            using_metrics={
                "waiting": tile_queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(STALL_MINUTES // 2), statistic="Minimum"
                ),
                "done": tiles_done.with_(period=Duration.minutes(STALL_MINUTES // 2)),
            },
            period=Duration.minutes(STALL_MINUTES // 2),
            label="work waiting, no tile done",
        )
        alarm(
            "TilesStalled",
            alarm_description=f"Work units wait in the tile queue but no tile was done for "
            f"{STALL_MINUTES} minutes: no worker is running or none can make progress (spot "
            "capacity, max_vcpus, the tile server unreachable).",
            metric=stalled,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
        )
        every_alarm = [*alarms, *self.alarms]
        if config.alarm_topic_arn:
            topic = sns.Topic.from_topic_arn(self, "AlarmTopic", config.alarm_topic_arn)
            for each in every_alarm:
                each.add_alarm_action(cw_actions.SnsAction(topic))

        # --- Dashboard -----------------------------------------------------------------------------
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=config.stack_name,
            default_interval=Duration.hours(3),
        )
        height = 6
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Tile queue (work units)", left=[queue_waiting, queue_in_flight], width=8, height=height
            ),
            cloudwatch.GraphWidget(title="Dead-letter queue", left=[dlq_depth], width=8, height=height),
            cloudwatch.GraphWidget(title="Tiles done per minute", left=[tiles_done], width=8, height=height),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Batch worker jobs (per 5 minutes)",
                left=[batch_jobs(status) for status in BATCH_STATUSES],
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
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=every_alarm, width=24, height=4)
        )

        CfnOutput(
            self,
            resources.OUTPUT_DASHBOARD_URL,
            value=(
                f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
                f"#dashboards/dashboard/{config.stack_name}"
            ),
            description="The deployment's CloudWatch dashboard",
        )

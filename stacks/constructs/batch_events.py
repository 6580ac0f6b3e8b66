"""Batch job events as metrics: AWS Batch publishes no job metrics of its own, so its "Batch Job
State Change" events for a deployment's job queue are sent by an EventBridge rule to a log group,
and a metric filter counts them by status (``<namespace>/<stack name>`` ``BatchJobs``, dimension
``Status``). The log group doubles as a searchable history of every worker's life cycle.
"""

from __future__ import annotations

import jsii
from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from looking_glass.runtime import resources

from ..config import DeploymentConfig

BATCH_JOBS_METRIC = "BatchJobs"
BATCH_STATUSES = ("SUBMITTED", "RUNNABLE", "RUNNING", "SUCCEEDED", "FAILED")


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


class BatchJobEvents:
    """The log group ``BatchJobEvents`` (``/aws/events/<stack name>-batch-jobs``) with the resource
    policy that lets EventBridge write to it, the rule ``BatchJobStateChanges`` on ``job_queue``
    and the metric filter ``BatchJobsByStatus``, added to ``scope`` (see ``stacks.constructs``).
    ``jobs(status)`` is the metric of one status."""

    def __init__(
        self,
        scope: Construct,
        *,
        config: DeploymentConfig,
        job_queue: batch.IJobQueue,
        key: kms.IKey | None = None,
    ) -> None:
        self.namespace = f"{resources.METRICS_NAMESPACE}/{config.stack_name}"
        self.log_group = logs.LogGroup(
            scope,
            "BatchJobEvents",
            log_group_name=f"/aws/events/{config.stack_name}-batch-jobs",
            retention=config.log_retention,
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        logs.CfnResourcePolicy(
            scope,
            "BatchJobEventsPolicy",
            policy_name=f"{config.stack_name}-batch-job-events",
            policy_document=Stack.of(scope).to_json_string(
                iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            principals=[
                                iam.ServicePrincipal("events.amazonaws.com"),
                                iam.ServicePrincipal("delivery.logs.amazonaws.com"),
                            ],
                            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                            resources=[self.log_group.log_group_arn],
                        )
                    ]
                ).to_json()
            ),
        )
        events.Rule(
            scope,
            "BatchJobStateChanges",
            description="Looking Glass: state changes of this deployment's worker jobs",
            event_pattern=events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={"jobQueue": [job_queue.job_queue_arn]},
            ),
            targets=[_LogGroupTarget(self.log_group)],
        )
        logs.MetricFilter(
            scope,
            "BatchJobsByStatus",
            log_group=self.log_group,
            filter_pattern=logs.FilterPattern.exists("$.detail.status"),
            metric_namespace=self.namespace,
            metric_name=BATCH_JOBS_METRIC,
            metric_value="1",
            dimensions={"Status": "$.detail.status"},
            unit=cloudwatch.Unit.COUNT,
        )

    def jobs(self, status: str) -> cloudwatch.Metric:
        """Jobs that reached ``status`` (one of ``BATCH_STATUSES``), per 5 minutes."""
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name=BATCH_JOBS_METRIC,
            dimensions_map={"Status": status},
            statistic="Sum",
            period=Duration.minutes(5),
            label=status,
        )

"""A queue where messages end up when nothing more will process them (a dead-letter queue or an
on-failure destination), with an alarm as soon as one arrives. Encrypted, SSL-only, 14 days."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from looking_glass.runtime import resources

from .nag import acknowledge


def terminal_queue(
    scope: Construct, construct_id: str, *, nag_reason: str, alarm_description: str
) -> tuple[sqs.Queue, cloudwatch.Alarm]:
    """The queue (id ``construct_id``) and its alarm (id ``construct_id + "NotEmpty"``)."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.seconds(resources.QUEUE_RETENTION_S),
    )
    # cdk-nag wants a DLQ on every queue; this one is itself the end of the line.
    acknowledge(queue, "AwsSolutions-SQS3", nag_reason)
    alarm = cloudwatch.Alarm(
        scope,
        f"{construct_id}NotEmpty",
        alarm_description=alarm_description,
        metric=queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic="Maximum"
        ),
        threshold=0,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    return queue, alarm

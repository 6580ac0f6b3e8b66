"""The project's queues: ``terminal_queue``, where messages end up when nothing more will process
them (a dead-letter queue or an on-failure destination), with an alarm as soon as one arrives;
and ``TileQueues``, the tile work queue with its dead-letter queue. Encrypted, SSL-only, 14 days.

Queue settings come from ``looking_glass.runtime.resources`` (the embedded run uses the same ones).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from looking_glass.runtime import resources

from ..nag import acknowledge


def queue_encryption(key: kms.IKey | None) -> dict:
    """The encryption properties of a queue: SQS-managed SSE, or SSE-KMS with ``key``."""
    if key is None:
        return dict(encryption=sqs.QueueEncryption.SQS_MANAGED)
    return dict(encryption=sqs.QueueEncryption.KMS, encryption_master_key=key)


def terminal_queue(
    scope: Construct,
    construct_id: str,
    *,
    nag_reason: str,
    alarm_description: str,
    key: kms.IKey | None = None,
) -> tuple[sqs.Queue, cloudwatch.Alarm]:
    """The queue (id ``construct_id``) and its alarm (id ``construct_id + "NotEmpty"``)."""
    queue = sqs.Queue(
        scope,
        construct_id,
        **queue_encryption(key),
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


class TileQueues:
    """The tile work queue (``TileQueue``: work units from the enumerator to the workers) and its
    dead-letter queue (``TileDeadLetterQueue``, alarm ``TileDeadLetterQueueNotEmpty``), added to
    ``scope`` (see ``stacks.constructs``: no construct level of its own)."""

    def __init__(self, scope: Construct, *, key: kms.IKey | None = None) -> None:
        self.dead_letter_queue, self.dead_letter_alarm = terminal_queue(
            scope,
            "TileDeadLetterQueue",
            nag_reason="This is the dead-letter queue of the tile queue; an alarm watches its depth.",
            alarm_description=(
                "Work units reached the tile dead-letter queue: their tiles have no result. "
                "Inspect the messages, fix the cause and redrive them to the tile queue."
            ),
            key=key,
        )
        self.queue = sqs.Queue(
            scope,
            "TileQueue",
            **queue_encryption(key),
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(resources.TILE_QUEUE_VISIBILITY_TIMEOUT_S),
            retention_period=Duration.seconds(resources.QUEUE_RETENTION_S),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=resources.TILE_QUEUE_MAX_RECEIVE_COUNT
            ),
        )

"""Encryption at rest with a customer-managed key (context ``encryption=kms``).

With ``encryption=aws-managed`` (the default) every store keeps AWS's own keys and nothing here
adds a resource or a statement. With ``encryption=kms`` there is one key for the deployment:

- created by ``StorageStack`` as ``DataKey`` (rotation on, retained when the stack is deleted),
  with a key policy that lets CloudWatch Logs encrypt this account's log groups and, when
  ``alarm_topic_arn`` is set, CloudWatch publish to an SNS topic encrypted with it; or
- the user's own key (``kms_key_arn``), imported. Its key policy is the user's: it must allow
  what the created key's policy allows (see ``key_policy_statements`` and docs/deploy.md).

Roles get the ``kms:`` actions the services they call need, and only through those services
(condition ``kms:ViaService``), granted by ``grant_key_use`` with one of the ``KEY_USE`` sets.
CDK's own grants (``queue.grant_send_messages``, ``bucket.grant_read_write``...) would add
``kms:Encrypt`` and ``kms:ReEncrypt*`` as well; the stacks call the helpers below instead
(``grant_send``/``grant_consume`` also leave out the queue actions the processes never call).
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..config import DeploymentConfig

# What a caller of each service needs on the key, by use. SQS: producers generate the data key
# and decrypt it (to reuse it), consumers decrypt. S3: reading an object decrypts; writing one in a
# single PUT generates a data key; writing in multipart uploads decrypts it again for each part. DynamoDB: table reads and
# writes go through the table key, which DynamoDB decrypts (and, for writes, encrypts) on the
# caller's behalf. Secrets Manager: reading a secret value decrypts it.
KEY_USE: dict[str, tuple[str, ...]] = {
    "sqs-send": ("kms:Decrypt", "kms:GenerateDataKey"),
    "sqs-consume": ("kms:Decrypt",),
    "s3-read": ("kms:Decrypt",),
    "s3-put": ("kms:GenerateDataKey",),
    "s3-write": ("kms:Decrypt", "kms:GenerateDataKey"),
    "dynamodb": ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"),
    "secretsmanager-read": ("kms:Decrypt",),
}
_SERVICE = {
    "sqs-send": "sqs",
    "sqs-consume": "sqs",
    "s3-read": "s3",
    "s3-put": "s3",
    "s3-write": "s3",
    "dynamodb": "dynamodb",
    "secretsmanager-read": "secretsmanager",
}
# What the processes call on a queue (looking_glass.pipeline): a producer sends (SendMessage,
# SendMessageBatch); a consumer receives, deletes and changes the visibility of what it holds
# (the heartbeat, units kept for redelivery). Not CDK's grant sets, which add GetQueueAttributes
# and GetQueueUrl: the processes have the queue URLs from their environment and call neither
# (tests/infra/test_recorded_calls.py).
SQS_SEND_ACTIONS = ("sqs:SendMessage",)
SQS_CONSUME_ACTIONS = ("sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage")


def data_key(scope: Construct, config: DeploymentConfig) -> kms.IKey | None:
    """The deployment's key in ``scope`` (id ``DataKey``), or None with ``encryption=aws-managed``."""
    if not config.kms:
        return None
    if config.kms_key_arn:
        return kms.Key.from_key_arn(scope, "DataKey", config.kms_key_arn)
    key = kms.Key(
        scope,
        "DataKey",
        description=f"Looking Glass {config.stack_name}: buckets, queues, table, logs, training",
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.RETAIN,  # data encrypted with it outlives the stack
    )
    for statement in key_policy_statements(config):
        key.add_to_resource_policy(statement)
    return key


def key_policy_statements(config: DeploymentConfig) -> list[iam.PolicyStatement]:
    """What the key policy allows services to do beyond the account's own IAM policies: CloudWatch
    Logs encrypts and decrypts this account's log groups in this region; CloudWatch (alarms)
    publishes to an encrypted ``alarm_topic_arn``."""
    statements = [
        iam.PolicyStatement(
            sid="CloudWatchLogsOfThisAccount",
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            actions=[
                "kms:Decrypt*",
                "kms:Describe*",
                "kms:Encrypt*",
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
            ],
            resources=["*"],  # in a key policy, "*" is this key
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                    )
                }
            },
        )
    ]
    if config.alarm_topic_arn:
        statements.append(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsToTheEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
    return statements


def grant_key_use(key: kms.IKey | None, grantee: iam.IGrantable, uses: Iterable[str]) -> None:
    """Allow ``grantee`` the ``KEY_USE`` actions of ``uses`` on ``key``, each through its service
    only (``kms:ViaService``). Nothing without a key."""
    if key is None:
        return
    by_service: dict[str, set[str]] = {}
    for use in uses:
        by_service.setdefault(_SERVICE[use], set()).update(KEY_USE[use])
    for service, actions in sorted(by_service.items()):
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=sorted(actions),
                resources=[key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"{service}.{Aws.REGION}.amazonaws.com"}},
            )
        )


def grant_send(queue: sqs.IQueue, grantee: iam.IGrantable, key: kms.IKey | None) -> None:
    """Sending to ``queue`` (``SQS_SEND_ACTIONS``), with only the key actions a producer needs."""
    iam.Grant.add_to_principal(grantee=grantee, actions=list(SQS_SEND_ACTIONS), resource_arns=[queue.queue_arn])
    grant_key_use(key, grantee, ["sqs-send"])


def grant_consume(queue: sqs.IQueue, grantee: iam.IGrantable, key: kms.IKey | None) -> None:
    """Consuming ``queue`` (``SQS_CONSUME_ACTIONS``), with only the key actions a consumer needs."""
    iam.Grant.add_to_principal(
        grantee=grantee, actions=list(SQS_CONSUME_ACTIONS), resource_arns=[queue.queue_arn]
    )
    grant_key_use(key, grantee, ["sqs-consume"])


def without_key(scope: Construct, construct_id: str, queue: sqs.IQueue) -> sqs.IQueue:
    """A reference to ``queue`` that knows no key, for CDK constructs that grant on a queue
    themselves (``SqsDestination``); the caller grants the key with ``grant_key_use``."""
    return sqs.Queue.from_queue_attributes(
        scope, construct_id, queue_arn=queue.queue_arn, queue_url=queue.queue_url, queue_name=queue.queue_name
    )


__all__ = [
    "KEY_USE",
    "SQS_CONSUME_ACTIONS",
    "SQS_SEND_ACTIONS",
    "data_key",
    "grant_consume",
    "grant_key_use",
    "grant_send",
    "key_policy_statements",
    "without_key",
]

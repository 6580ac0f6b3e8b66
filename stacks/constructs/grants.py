"""Grants the stacks repeat: item-level access to the results table."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam

# Item-level access to the results table: what looking_glass.pipeline.store calls (GetItem, BatchGetItem,
# Query, PutItem, UpdateItem and TransactWriteItems, which IAM authorizes as the PutItem,
# UpdateItem and ConditionCheckItem it contains). No Scan, DeleteItem or BatchWriteItem, and no
# index: the processes never list jobs (the CLI does, with the operator's own credentials).
TABLE_DATA_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
)


def grant_table_data(table: dynamodb.ITable, grantee: iam.IGrantable) -> iam.Grant:
    """Item reads and writes on the table itself (not its indexes), see TABLE_DATA_ACTIONS."""
    return iam.Grant.add_to_principal(
        grantee=grantee, actions=list(TABLE_DATA_ACTIONS), resource_arns=[table.table_arn]
    )

"""Grants the stacks repeat: item-level access to the results table, per process."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam

# Item-level access to the results table: what each process calls through
# looking_glass.pipeline.store. TransactWriteItems is authorized by IAM as the PutItem and
# UpdateItem it contains (the store writes no ConditionCheck or Delete item). No Scan, Query or
# DeleteItem, no DescribeTable and no index: the processes never list jobs or
# tiles (the CLI does, with the operator's own credentials). tests/infra/test_recorded_calls.py
# checks the calls of an end-to-end run against these grants.
#   enumerator: get_job (GetItem), create_job (PutItem), update_job / fail_job (UpdateItem)
ENUMERATOR_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
#   worker: final_quadkeys, the ledger and job reads (BatchGetItem), tile packs (UpdateItem: one per
#   pack, never a whole-item write; looking_glass.pipeline.packs), the ledger transaction
#   (TransactWriteItems: PutItem, UpdateItem), try_complete and note_retry (UpdateItem)
WORKER_TABLE_ACTIONS = ("dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
# Everything either process may do (kept for callers that grant both).
TABLE_DATA_ACTIONS = tuple(sorted(set(ENUMERATOR_TABLE_ACTIONS) | set(WORKER_TABLE_ACTIONS)))


def grant_table_data(
    table: dynamodb.ITable, grantee: iam.IGrantable, actions: Sequence[str] = TABLE_DATA_ACTIONS
) -> iam.Grant:
    """Item ``actions`` on the table itself (not its indexes)."""
    return iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=[table.table_arn])

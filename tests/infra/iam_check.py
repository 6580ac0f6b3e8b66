"""Recording the AWS calls a process makes and checking them against the IAM policies of the role
that would make them in the synthesized templates.

- ``record_calls()``: every botocore API call made in-process while it is active, as
  ``(service, operation, params)`` (a patch of ``BaseClient._make_api_call``; nothing is changed).
- ``iam_requests(call, account, region)``: what IAM authorizes for one call, as
  ``(action, resource ARN)`` pairs (a ``TransactWriteItems`` is the Put/Update/ConditionCheck of
  each item, a ``GetObject`` of a version also ``s3:GetObjectVersion``, ...).
- ``RolePolicy``: the Allow statements of one role's policies in a template snapshot, with the
  CloudFormation intrinsics (``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::GetStackOutput``)
  resolved to the physical resources of a test run; ``allows(action, arn)`` evaluates them
  (wildcards ``*``/``?`` in actions and resources; a statement with a condition never matches
  here, as the calls recorded carry no condition context).

A small evaluator on purpose: the policies of the stacks use Allow statements only, no
NotAction/NotResource, no Deny, so "some statement allows it" is IAM's answer.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.client import BaseClient


@dataclass(frozen=True)
class Call:
    service: str  # the endpoint prefix: s3, sqs, dynamodb, ...
    operation: str
    params: Mapping[str, Any] = field(hash=False, compare=False)


@contextlib.contextmanager
def record_calls() -> Iterator[list[Call]]:
    """The calls made while the block runs (this process, every client)."""
    calls: list[Call] = []
    original = BaseClient._make_api_call

    def recording(self, operation_name, api_params):
        calls.append(Call(self.meta.service_model.endpoint_prefix, operation_name, dict(api_params)))
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = recording
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original


def _queue_arn(url: str, account: str, region: str) -> str:
    return f"arn:aws:sqs:{region}:{account}:{urlsplit(url).path.rstrip('/').rsplit('/', 1)[-1]}"


def iam_requests(call: Call, account: str, region: str) -> list[tuple[str, str]]:
    """``(action, resource ARN)`` pairs IAM authorizes for ``call``; KeyError if unmapped."""
    p = call.params
    table = lambda name: f"arn:aws:dynamodb:{region}:{account}:table/{name}"  # noqa: E731
    if call.service == "s3":
        obj = f"arn:aws:s3:::{p.get('Bucket')}/{p.get('Key')}"
        if call.operation in ("GetObject", "HeadObject"):
            pairs = [("s3:GetObject", obj)]
            if p.get("VersionId"):
                pairs.append(("s3:GetObjectVersion", obj))
            return pairs
        return {
            "PutObject": [("s3:PutObject", obj)],
            "ListObjectsV2": [("s3:ListBucket", f"arn:aws:s3:::{p.get('Bucket')}")],
        }[call.operation]
    if call.service == "sqs":
        if call.operation == "GetQueueUrl":
            return [("sqs:GetQueueUrl", f"arn:aws:sqs:{region}:{account}:{p['QueueName']}")]
        action = {
            "SendMessage": "sqs:SendMessage",
            "SendMessageBatch": "sqs:SendMessage",
            "ReceiveMessage": "sqs:ReceiveMessage",
            "DeleteMessage": "sqs:DeleteMessage",
            "DeleteMessageBatch": "sqs:DeleteMessage",
            "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
            "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
            "GetQueueAttributes": "sqs:GetQueueAttributes",
        }[call.operation]
        return [(action, _queue_arn(p["QueueUrl"], account, region))]
    if call.service == "dynamodb":
        if call.operation == "TransactWriteItems":
            kinds = {"Put": "PutItem", "Update": "UpdateItem", "ConditionCheck": "ConditionCheckItem", "Delete": "DeleteItem"}
            return [
                (f"dynamodb:{kinds[kind]}", table(body["TableName"]))
                for item in p["TransactItems"]
                for kind, body in item.items()
            ]
        if call.operation == "BatchGetItem":
            return [("dynamodb:BatchGetItem", table(name)) for name in p["RequestItems"]]
        if call.operation == "BatchWriteItem":
            # Authorized as dynamodb:BatchWriteItem, not as the PutItem/DeleteItem it carries (the
            # Service Authorization Reference, "Actions, resources, and condition keys for Amazon
            # DynamoDB", operations table).
            return [("dynamodb:BatchWriteItem", table(name)) for name in p["RequestItems"]]
        resource = table(p["TableName"])
        if p.get("IndexName"):
            resource += f"/index/{p['IndexName']}"
        return [(f"dynamodb:{call.operation}", resource)]
    if call.service == "batch" and call.operation == "SubmitJob":
        return [("batch:SubmitJob", p["jobQueue"]), ("batch:SubmitJob", p["jobDefinition"])]
    if call.service == "cloudformation" and call.operation == "DescribeStacks":
        return [("cloudformation:DescribeStacks", f"arn:aws:cloudformation:{region}:{account}:stack/{p['StackName']}/*")]
    if call.service == "batch" and call.operation in ("DescribeJobs", "ListJobs"):
        return [(f"batch:{call.operation}", "*")]  # no resource-level permissions
    if call.service == "states" and call.operation in ("StartExecution", "DescribeExecution"):
        return [(f"states:{call.operation}", p.get("stateMachineArn") or p["executionArn"])]
    if call.service == "ssm" and call.operation in ("GetParameter", "PutParameter", "DeleteParameter"):
        name = p["Name"].lstrip("/")  # a parameter's ARN has one slash before its path
        return [(f"ssm:{call.operation}", f"arn:aws:ssm:{region}:{account}:parameter/{name}")]
    if call.service == "secretsmanager" and call.operation == "GetSecretValue":
        return [("secretsmanager:GetSecretValue", p["SecretId"])]
    raise KeyError(f"no IAM mapping for {call.service}:{call.operation}; add it to iam_requests")


def _pattern(text: str) -> re.Pattern[str]:
    """An IAM wildcard string (``*``, ``?``) as a regular expression."""
    return re.compile("^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text) + "$")


@dataclass
class Statement:
    actions: list[str]
    resources: list[str]
    conditional: bool

    def allows(self, action: str, arn: str) -> bool:
        return (
            not self.conditional
            and any(_pattern(a.lower()).match(action.lower()) for a in self.actions)
            and any(_pattern(r).match(arn) for r in self.resources)
        )


class RolePolicy:
    """The Allow statements of the policies attached to role ``role_prefix`` (a logical id
    prefix) in the snapshot ``snapshots/<context>/<stack>.json``; ``physical`` maps a logical
    id prefix to its ``{"Ref": ..., "Arn": ..., <attribute>: ...}`` in the test run."""

    def __init__(
        self,
        snapshots: Path,
        context: str,
        stack: str,
        role_prefix: str,
        physical: Mapping[str, Mapping[str, str]],
        account: str,
        region: str,
    ) -> None:
        self._snapshots = snapshots / context
        self._physical = physical
        self._pseudo = {"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account, "AWS::URLSuffix": "amazonaws.com"}
        template = self._template(stack)
        self.statements: list[Statement] = []
        for _logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::IAM::Policy":
                continue
            if not any(r.get("Ref", "").startswith(role_prefix) for r in resource["Properties"]["Roles"]):
                continue
            for s in resource["Properties"]["PolicyDocument"]["Statement"]:
                assert s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s, s
                actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
                raw = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
                self.statements.append(
                    Statement(actions, [self._resolve(r, stack) for r in raw], "Condition" in s)
                )
        assert self.statements, f"no policy of {role_prefix} in {stack}"

    def _template(self, stack: str) -> dict:
        return json.loads((self._snapshots / f"{stack}.json").read_text())

    def _attribute(self, logical_id: str, attribute: str) -> str:
        for prefix, attributes in self._physical.items():
            if logical_id.startswith(prefix):
                return attributes[attribute]
        return f"<unresolved {logical_id}.{attribute}>"

    def _resolve(self, value: Any, stack: str) -> str:
        if isinstance(value, str):
            return value
        if "Ref" in value:
            name = value["Ref"]
            return self._pseudo.get(name) or self._attribute(name, "Ref")
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return self._attribute(logical_id, attribute)
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(self._resolve(p, stack) for p in parts)
        if "Fn::GetStackOutput" in value:
            ref = value["Fn::GetStackOutput"]
            producer = ref["StackName"]
            suffix = next(s for s in ("Storage", "Inference", "Ingest", "Training", "Monitoring") if producer.endswith(s))
            output = self._template(suffix)["Outputs"][ref["OutputName"]]["Value"]
            return self._resolve(output, suffix)
        if "Fn::Sub" in value:
            text = value["Fn::Sub"]
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._pseudo.get(m.group(1), m.group(0)), text)
        raise ValueError(f"cannot resolve {value}")

    def allows(self, action: str, arn: str) -> bool:
        return any(s.allows(action, arn) for s in self.statements)

    def granted_actions(self) -> set[str]:
        return {a for s in self.statements for a in s.actions}

"""cdk-nag (3.x) wiring: the AwsSolutions rule pack as a CDK policy-validation plugin, and a
helper to acknowledge findings with a reason.

cdk-nag 3 replaced ``NagSuppressions`` with CDK's own ``Validations.of(x).acknowledge(...)``.
Acknowledgements match a finding id exactly, e.g. ``AwsSolutions-IAM5[Action::s3:GetObject*]``;
there is no prefix matching, so wildcard findings are listed one by one where they occur.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from constructs import IConstruct


def add_nag_checks(app: App) -> None:
    """Register the AwsSolutions checks on ``app``; they run (and fail on findings) at synth."""
    from cdk_nag import AwsSolutionsChecks

    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )


def acknowledge(scope: IConstruct, rule_ids: str | list[str], reason: str) -> None:
    """Acknowledge one or more cdk-nag findings on ``scope`` (and everything under it)."""
    if not reason.strip():
        raise ValueError("a cdk-nag acknowledgement needs a reason")
    ids = [rule_ids] if isinstance(rule_ids, str) else list(rule_ids)
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule_id, reason=reason) for rule_id in ids))


def arn_of(resource: IConstruct) -> str:
    """How cdk-nag writes the ARN of a resource of the same stack in a finding: ``<LogicalId.Arn>``."""
    from aws_cdk import Stack

    cfn = resource.node.default_child
    stack = Stack.of(resource)
    return f"<{stack.resolve(stack.get_logical_id(cfn))}.Arn>"


def cross_stack_output(producer_stack_name: str, output_name: str) -> str:
    """How cdk-nag writes a value read from another stack (weak reference, Fn::GetStackOutput).

    ``output_name`` is the output CDK generates in the producing stack for the reference
    (``PublishOutputFnGetAtt<LogicalId>Arn<hash>``); it depends only on the producing resource's
    construct path. If that changes, `cdk synth` fails and prints the new finding id.
    """
    import json

    return json.dumps(
        {
            "Fn::GetStackOutput": {
                "StackName": producer_stack_name,
                "Region": {"Ref": "AWS::Region"},
                "OutputName": output_name,
            }
        },
        separators=(",", ":"),
    )


# Outputs that CDK publishes in StorageStack for the cross-stack bucket references (see above).
TRIGGER_BUCKET_ARN_OUTPUT = "PublishOutputFnGetAttTriggerBucketA3E815AAArn60982818"
MASKS_BUCKET_ARN_OUTPUT = "PublishOutputFnGetAttMasksBucket6C75BDA9Arn735E6247"

LAMBDA_BASIC_EXECUTION = (
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]"
)

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


# --- Other IaC scanners (checkov) ------------------------------------------------------------------
# checkov reads suppressions from a resource's template metadata: Metadata.checkov.skip, a list of
# {"id": ..., "comment": ...}. The stacks mark the findings that are intended, with the reason,
# the way cdk-nag findings are acknowledged; tests/infra/test_checkov.py runs the scanner.
CHECKOV_LAMBDA_CONCURRENCY = "CKV_AWS_115"
CHECKOV_LAMBDA_DLQ = "CKV_AWS_116"
CHECKOV_S3_ACCESS_LOGGING = "CKV_AWS_18"


def skip_checkov(resource: IConstruct, skips: dict[str, str]) -> None:
    """Mark the checkov checks ``skips`` (id: reason) as intended on ``resource`` (a construct
    or its CloudFormation resource)."""
    from aws_cdk import CfnResource

    cfn = resource if isinstance(resource, CfnResource) else resource.node.default_child
    if not isinstance(cfn, CfnResource):
        raise TypeError(f"{resource.node.path} has no CloudFormation resource to mark")
    if any(not reason.strip() for reason in skips.values()):
        raise ValueError("a checkov suppression needs a reason")
    existing = cfn.get_metadata("checkov") or {}
    entries = [*existing.get("skip", []), *({"id": i, "comment": c} for i, c in skips.items())]
    cfn.add_metadata("checkov", {"skip": entries})


def skip_checkov_on_cdk_handlers(scope: IConstruct) -> None:
    """CDK's own custom-resource handlers (bucket notifications, the VPC's default security
    group): functions CloudFormation calls synchronously while it deploys, so a concurrency
    reservation or a dead-letter queue has nothing to act on."""
    from aws_cdk import CfnResource
    from aws_cdk import aws_lambda as lambda_

    for construct in scope.node.find_all():
        if (
            isinstance(construct, CfnResource)
            and construct.cfn_resource_type == "AWS::Lambda::Function"
            and not isinstance(construct.node.scope, lambda_.Function)
        ):
            skip_checkov(
                construct,
                {
                    CHECKOV_LAMBDA_CONCURRENCY: "CDK's custom-resource handler, invoked only by "
                    "CloudFormation during deployments.",
                    CHECKOV_LAMBDA_DLQ: "CDK's custom-resource handler: CloudFormation invokes it "
                    "synchronously and fails the deployment on an error; nothing is queued.",
                },
            )

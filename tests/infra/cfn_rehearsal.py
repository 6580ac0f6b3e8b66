"""A deployment rehearsal: the synthesized templates (the committed ``default`` snapshots, kept equal
to ``cdk synth`` by test_template_equality.py) created by moto's CloudFormation, stack by stack in
the app's order, each stack's cross-stack references resolved from the outputs of the stacks
created before it.

moto cannot create every resource type the stacks use. ``prepare`` removes those from a copy of
each template, by an explicit list (``STAND_INS``: type -> what the rehearsal does instead), and
returns what it removed; ``tests/infra/test_cfn_rehearsal.py`` checks that the list is exactly the
types of the templates that moto's installed version has no CloudFormation model for (plus the
custom resources, whose provider Lambdas moto would have to run), so an upgrade of moto that
learns one fails the test until the list is shortened. Other changes ``prepare`` makes, each
needed only because moto is not CloudFormation:

- ``Fn::GetStackOutput`` (CDK's cross-stack reference): replaced by the producing stack's output
  value, read from the stack moto created (moto has no such intrinsic);
- the ``BootstrapVersion`` parameter and the ``CheckBootstrapVersion`` rule of ``cdk bootstrap``:
  removed (there is no bootstrap stack);
- the Batch compute environment gets Batch's service-linked role as its ``ServiceRole`` (AWS
  uses that role when none is named; moto requires one) and its ``Type`` in upper case (moto
  compares it case-sensitively);
- ``Fn::GetAtt`` of a Batch compute environment's or job queue's ARN becomes ``Ref`` (the same
  value in CloudFormation; moto's models lack the attribute);
- the customer-managed key (context ``kms``): tags as ``TagKey``/``TagValue`` and the key policy
  as a JSON string (its intrinsics left unresolved: moto enforces no key policy), the shapes
  moto's KMS model passes on to its API unchanged;
- the Lambda functions' code: the asset bucket of ``cdk bootstrap`` is replaced by a rehearsal
  bucket holding a small placeholder zip (moto stores the function, it never runs it here; the
  enumerator runs in-process with the environment moto stored for the function).
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
ORDER = ("Storage", "Inference", "Ingest", "Training", "Monitoring")

# Resource types moto 5.x's CloudFormation cannot create, and how the rehearsal stands in for each.
STAND_INS: dict[str, str] = {
    "AWS::CloudWatch::Alarm": "not stood in: alarms are checked on the template "
    "(tests/infra/test_cdk_synth.py), no metric reaches moto",
    "AWS::Lambda::EventInvokeConfig": "not stood in: the enumerator's on-failure destination and "
    "retries are Lambda-service behaviour; the handler runs in-process here",
    "AWS::Logs::MetricFilter": "not stood in: no Lambda logs reach moto's CloudWatch Logs",
    "AWS::S3::BucketPolicy": "not stood in: moto does not enforce bucket policies (TLS-only, "
    "log delivery); checked on the template by cdk-nag and cfn-lint",
    "AWS::SQS::QueuePolicy": "not stood in: moto does not enforce queue policies (TLS-only)",
    "Custom::S3BucketNotifications": "the rehearsal builds the S3 event of the uploaded AOI and "
    "calls the enumerator handler with it (the notification is what the custom resource would "
    "have configured on the trigger bucket)",
    "Custom::VpcRestrictDefaultSG": "not stood in: it strips the default security group's "
    "rules, which nothing of the rehearsal uses",
}


# GetAtt attributes moto's models lack where CloudFormation's Ref gives the same value (the ARN).
GETATT_AS_REF = {("AWS::Batch::ComputeEnvironment", "ComputeEnvironmentArn"), ("AWS::Batch::JobQueue", "JobQueueArn")}


def _getatt_as_ref(value: Any, types: Mapping[str, str]) -> Any:
    if isinstance(value, list):
        return [_getatt_as_ref(v, types) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        if (types.get(logical_id), attribute) in GETATT_AS_REF:
            return {"Ref": logical_id}
    return {k: _getatt_as_ref(v, types) for k, v in value.items()}


# cdk.json's tile_url_template: what the snapshots hold as the default imagery source.
CDK_TILE_URL_TEMPLATE = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]["tile_url_template"]


def template(stack: str, context: str = "default") -> dict:
    """The snapshot of ``<stack>.json`` (Storage, Inference, ...)."""
    return json.loads((SNAPSHOTS / context / f"{stack}.json").read_text())


def placeholder_zip() -> bytes:
    """A zip holding one empty handler: what moto stores as each Lambda's code."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("index.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


def _resolve(value: Any, outputs: Mapping[str, Mapping[str, str]], asset_bucket: str) -> Any:
    if isinstance(value, list):
        return [_resolve(v, outputs, asset_bucket) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::GetStackOutput"}:
        ref = value["Fn::GetStackOutput"]
        suffix = next((s for s in ORDER if ref["StackName"].endswith(s)), ref["StackName"])
        try:
            return outputs[suffix][ref["OutputName"]]
        except KeyError:
            raise ValueError(f"{ref['StackName']} has no output {ref['OutputName']} (created in the wrong order?)") from None
    return {k: _resolve(v, outputs, asset_bucket) for k, v in value.items()}


def _refers(value: Any, logical_id: str) -> bool:
    """Whether ``value`` holds a Ref, GetAtt or DependsOn of ``logical_id``."""
    text = json.dumps(value)
    return any(f in text for f in (f'"Ref": "{logical_id}"', f'"Fn::GetAtt": ["{logical_id}"', f'${{{logical_id}}}',
                                   f'${{{logical_id}.'))


def prepare(
    tmpl: dict, outputs: Mapping[str, Mapping[str, str]], asset_bucket: str, code_key: str,
    batch_service_role: str = "",
) -> tuple[dict, list[tuple[str, str]]]:
    """(a copy of ``tmpl`` moto can create, the ``(logical id, type)`` removed from it).

    ``outputs``: stack suffix (``Storage``...) -> its outputs, for ``Fn::GetStackOutput``. Raises ValueError for a
    resource type moto cannot create that ``STAND_INS`` does not name (a new type in the stacks
    must get its line there), or for a reference to an output not created yet."""
    from moto.cloudformation.parsing import get_model_map

    known = get_model_map()
    out = copy.deepcopy(tmpl)
    removed = []
    for logical_id, resource in list(out["Resources"].items()):
        kind = resource["Type"]
        if kind in STAND_INS:
            removed.append((logical_id, kind))
            del out["Resources"][logical_id]
        elif kind not in known:
            raise ValueError(f"{logical_id}: moto cannot create {kind} and STAND_INS does not say what stands in for it")
    gone = {logical_id for logical_id, _ in removed}
    cascade = True
    while cascade:  # what refers to a removed resource goes too (the dashboard shows the alarms)
        cascade = False
        for logical_id, resource in list(out["Resources"].items()):
            refers = next((g for g in gone if _refers(resource, g)), None)
            if refers:
                removed.append((logical_id, f"{resource['Type']} (refers to {refers})"))
                gone.add(logical_id)
                del out["Resources"][logical_id]
                cascade = True
    for resource in out["Resources"].values():
        depends = resource.get("DependsOn")  # ordering only: dropped with what it waited for
        if depends:
            kept = [d for d in ([depends] if isinstance(depends, str) else depends) if d not in gone]
            if kept:
                resource["DependsOn"] = kept
            else:
                del resource["DependsOn"]
        if resource["Type"] == "AWS::Lambda::Function":
            resource["Properties"]["Code"] = {"S3Bucket": asset_bucket, "S3Key": code_key}
        if resource["Type"] == "AWS::Batch::ComputeEnvironment" and "ServiceRole" not in resource["Properties"]:
            # Without one AWS uses Batch's service-linked role; moto's model requires it named.
            resource["Properties"]["ServiceRole"] = batch_service_role
        if resource["Type"] == "AWS::KMS::Key":
            # moto's KMS model hands CloudFormation's Key/Value tags to an API that wants
            # TagKey/TagValue, and keeps the key policy as given where its API reads a JSON string.
            props = resource["Properties"]
            props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props.get("Tags", [])]
            if isinstance(props.get("KeyPolicy"), dict):
                props["KeyPolicy"] = json.dumps(props["KeyPolicy"])
        if resource["Type"] == "AWS::Batch::ComputeEnvironment":
            # CloudFormation takes "managed"; moto's API check wants the upper-case enum.
            resource["Properties"]["Type"] = resource["Properties"]["Type"].upper()
    for name, output in list(out.get("Outputs", {}).items()):  # e.g. an alarm's ARN for Monitoring
        if any(_refers(output, g) for g in gone):
            removed.append((f"Outputs/{name}", "output of a removed resource"))
            del out["Outputs"][name]
    out.pop("Rules", None)
    out.get("Parameters", {}).pop("BootstrapVersion", None)
    if not out.get("Parameters"):
        out.pop("Parameters", None)
    out = _getatt_as_ref(out, {k: r["Type"] for k, r in out["Resources"].items()})
    return _resolve(out, outputs, asset_bucket), removed


def deploy(cfn, s3, iam, deployment: str, context: str = "default", tile_url_template: str | None = None) -> dict[str, Any]:
    """Create the stacks ``<deployment><suffix>`` of ``context`` in moto in the app's order.

    ``tile_url_template`` replaces cdk.json's ``tile_url_template`` (``CDK_TILE_URL_TEMPLATE``)
    wherever the templates hold it (the enumerator's and the workers' variables, the
    ``ImagerySources`` output), as a deployment with ``-c tile_url_template=...`` would: a test's
    tile server then stands in for the internet on every side that digests the source's definition.

    Cross-stack references are resolved by the producing stack's suffix, so ``deployment`` may
    differ from the snapshot's ``stack_name``. Returns ``{"outputs": suffix -> outputs,
    "removed": suffix -> [(logical id, type)], "resources": suffix -> [summaries]}``;
    raises AssertionError when a stack does not reach CREATE_COMPLETE."""
    asset_bucket = f"rehearsal-assets-{deployment.lower()}"
    s3.create_bucket(Bucket=asset_bucket)
    s3.put_object(Bucket=asset_bucket, Key="placeholder.zip", Body=placeholder_zip())
    linked = iam.list_roles(PathPrefix="/aws-service-role/batch.amazonaws.com/")["Roles"]
    role = (linked[0] if linked else  # created by an earlier rehearsal on this server
            iam.create_service_linked_role(AWSServiceName="batch.amazonaws.com")["Role"])["Arn"]
    outputs: dict[str, dict[str, str]] = {}
    removed: dict[str, list] = {}
    summaries: dict[str, list] = {}
    for suffix in ORDER:
        name = f"{deployment}{suffix}"
        snapshot = template(suffix, context)
        if tile_url_template is not None:
            snapshot = json.loads(json.dumps(snapshot).replace(CDK_TILE_URL_TEMPLATE, tile_url_template))
        body, removed[suffix] = prepare(snapshot, outputs, asset_bucket, "placeholder.zip", role)
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(body), Capabilities=["CAPABILITY_IAM"])
        (stack,) = cfn.describe_stacks(StackName=name)["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE", (name, stack["StackStatus"], stack.get("StackStatusReason"))
        outputs[suffix] = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        summaries[suffix] = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {"outputs": outputs, "removed": removed, "resources": summaries}

"""Grants no wider than what the processes do: the worker puts masks only under the prefix its
keys use, reads a model given as an object URI as that object (and its sidecar) only, and
otherwise reads the active model through the one SSM parameter its job definition names and the
registry prefix of the masks bucket.

Checked on the committed template snapshots (``tests/infra/snapshots``, kept equal to the
synthesized templates by ``test_template_equality.py``) and against the code that makes the calls.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")

from template_snapshots import CONTEXTS, SNAPSHOTS, job_definition_environment  # noqa: E402

from looking_glass.model.fetch import fetch_model  # noqa: E402
from looking_glass.model.registry import ENV_MODEL_PARAMETER, REGISTRY_PREFIX, parameter_name  # noqa: E402
from looking_glass.pipeline.unit_results import result_key  # noqa: E402
from looking_glass.runtime.resources import OUTPUT_ACTIVE_MODEL_PARAMETER, OUTPUT_PINNED_MODEL  # noqa: E402
from stacks.constructs.batch_workers import MASKS_PREFIX, model_object_keys  # noqa: E402


def worker_statements(context: str) -> list[dict]:
    template = json.loads((SNAPSHOTS / context / "Inference.json").read_text())
    (policy,) = [
        r for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Policy" and k.startswith("WorkerJobRoleDefaultPolicy")
    ]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def s3_resources(statements: list[dict], action: str) -> list[str]:
    found = []
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if action in actions:
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            found += [json.dumps(r) for r in resources]
    return found


def test_mask_keys_are_under_the_granted_prefix():
    assert result_key("job-1", "0123456789abcdef", ["q"], whole_unit=True).startswith(MASKS_PREFIX)
    assert result_key("job-1", "0123456789abcdef", ["q"], whole_unit=False).startswith(MASKS_PREFIX)
    for context in CONTEXTS:
        (put,) = s3_resources(worker_statements(context), "s3:PutObject")
        assert put.endswith(f'/{MASKS_PREFIX}*"]]}}'), (context, put)


class _RecordingS3:
    """A stand-in S3 client for fetch_model: records the keys it is asked for."""

    def __init__(self, archive_member: Path | None = None):
        self.keys: list[str] = []
        self.archive_member = archive_member

    def download_file(self, bucket, key, filename):
        self.keys.append(key)
        if key.endswith((".tar.gz", ".tgz")):
            with tarfile.open(filename, "w:gz") as tar:
                tar.add(self.archive_member, arcname="model.keras")
        else:
            Path(filename).write_bytes(b"")


@pytest.mark.parametrize(
    "key",
    ["models/v3/model.keras", "looking-glass/v3/model.tar.gz", "m.tgz", "deep/er/seg.v2.keras"],
)
def test_the_model_grant_names_exactly_the_objects_the_launcher_reads(tmp_path, key):
    member = tmp_path / "member.keras"
    member.write_bytes(b"")
    s3 = _RecordingS3(member)
    fetch_model(f"s3://bucket/{key}", tmp_path / "dest", s3=s3)
    assert sorted(s3.keys) == sorted(model_object_keys(key))


@pytest.mark.parametrize("context", ["optional-settings", "public-on-demand-model"])
def test_the_worker_reads_the_model_object_only(context):
    uri = CONTEXTS[context]["model_s3_uri"]
    bucket, key = uri[len("s3://"):].split("/", 1)
    reads = s3_resources(worker_statements(context), "s3:GetObject")
    assert [r for r in reads if bucket in r] == [
        json.dumps({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{bucket}/{k}"]]})
        for k in model_object_keys(key)
    ]
    assert not any("*" in r for r in reads if bucket in r)


def _statements_with(statements: list[dict], prefix: str) -> list[dict]:
    return [s for s in statements
            if any(a.startswith(prefix) for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]


REGISTRY_CONTEXTS = [c for c in CONTEXTS if not CONTEXTS[c].get("model_s3_uri")]
PINNED_CONTEXTS = [c for c in CONTEXTS if CONTEXTS[c].get("model_s3_uri")]


@pytest.mark.parametrize("context", REGISTRY_CONTEXTS)
def test_workers_read_the_active_model_through_the_parameter_the_job_definition_names(context):
    name = CONTEXTS[context].get("stack_name", "LookingGlass")
    parameter = parameter_name(name)
    env = job_definition_environment(context)
    assert env[ENV_MODEL_PARAMETER] == parameter and "LG_MODEL_S3_URI" not in env
    template = json.loads((SNAPSHOTS / context / "Inference.json").read_text())
    assert template["Outputs"][OUTPUT_ACTIVE_MODEL_PARAMETER]["Value"] == parameter
    statements = worker_statements(context)
    # ssm:GetParameter on exactly that parameter, nothing else of SSM.
    (ssm,) = _statements_with(statements, "ssm:")
    assert ssm["Action"] == "ssm:GetParameter" and "Condition" not in ssm
    arn = ssm["Resource"]["Fn::Join"][1]
    assert arn[-1] == f":parameter{parameter}" and "*" not in json.dumps(ssm["Resource"])
    # s3:GetObject on the masks bucket's registry/ only (the masks themselves stay unreadable).
    masks_reads = [r for r in s3_resources(statements, "s3:GetObject") if "MasksBucket" in r]
    assert masks_reads and all(r.endswith(f'/{REGISTRY_PREFIX}*"]]}}') for r in masks_reads), masks_reads


@pytest.mark.parametrize("context", PINNED_CONTEXTS)
def test_a_pinned_model_leaves_out_the_registry_and_the_parameter(context):
    env = job_definition_environment(context)
    assert ENV_MODEL_PARAMETER not in env and env["LG_MODEL_S3_URI"] == CONTEXTS[context]["model_s3_uri"]
    template = json.loads((SNAPSHOTS / context / "Inference.json").read_text())
    assert OUTPUT_ACTIVE_MODEL_PARAMETER not in template["Outputs"]
    # ... and names the pinned model, which `submit --stack` records as the job's model
    assert template["Outputs"][OUTPUT_PINNED_MODEL]["Value"] == CONTEXTS[context]["model_s3_uri"]
    statements = worker_statements(context)
    assert _statements_with(statements, "ssm:") == []
    assert not any(REGISTRY_PREFIX in r for r in s3_resources(statements, "s3:GetObject"))


@pytest.mark.parametrize("context", list(CONTEXTS))
def test_no_other_role_of_the_stacks_reaches_the_registry(context):
    """The registry is written by the operator's `models register` / `train --stack --wait`
    (docs/deploy.md, operator policy); the SageMaker role writes its archive to the training
    bucket only, and no other role of the stacks names registry/."""
    for stack in ("Storage", "Ingest", "Training", "Monitoring"):
        template = json.loads((SNAPSHOTS / context / f"{stack}.json").read_text())
        policies = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"]
        assert REGISTRY_PREFIX not in json.dumps(policies), (context, stack)
        assert "ssm:" not in json.dumps(policies), (context, stack)

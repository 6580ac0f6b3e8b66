"""``encryption=kms`` (stacks.constructs.encryption) and the host and training hardening: every
store that supports a customer-managed key uses the deployment's key, each role gets exactly the
``kms:`` actions it needs (through its services only), the user's own key is used as given, the
Batch instances boot from a hardened launch template and the training job can be placed in a VPC
with network isolation. Synthesized in-process with the cdk-nag checks (a finding fails here as
it fails ``cdk synth``).
"""

from __future__ import annotations

import json
import os

import pytest

aws_cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")

from aws_cdk.assertions import Template  # noqa: E402
from template_snapshots import CONTEXTS, QUIET_NODE_ENV  # noqa: E402

from stacks import ConfigError, DeploymentConfig, build_app, cdk_json_context  # noqa: E402
from stacks.constructs.encryption import KEY_USE  # noqa: E402

STACKS = ("storage", "inference", "ingest", "training", "monitoring")
OWN_KEY_ARN = CONTEXTS["kms-own-key"]["kms_key_arn"]


def _synth(context):
    os.environ.update(QUIET_NODE_ENV)
    lg = build_app(context=context, nag=True)
    assembly = lg.app.synth()  # runs the cdk-nag validation plugin; raises on findings
    return lg, {
        name: assembly.get_stack_by_name(getattr(lg, name).stack_name).template for name in STACKS
    }


@pytest.fixture(scope="module")
def kms_app():
    """The ``kms`` context of the snapshots: a created key, training in a VPC, isolated."""
    return _synth(CONTEXTS["kms"])


@pytest.fixture(scope="module")
def own_key_app():
    return _synth(CONTEXTS["kms-own-key"])


def resources_of(templates: dict, resource_type: str) -> dict[str, dict]:
    """``{"<stack>/<logical id>": resource}`` of one type across the templates."""
    return {
        f"{stack}/{logical_id}": resource
        for stack, template in templates.items()
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def key_reference(templates: dict, stack: str) -> object:
    """How ``stack`` refers to the created key (GetAtt in Storage, a cross-stack output elsewhere)."""
    (key_id,) = [k for k, v in templates["storage"]["Resources"].items() if v["Type"] == "AWS::KMS::Key"]
    if stack == "storage":
        return {"Fn::GetAtt": [key_id, "Arn"]}
    text = json.dumps(templates[stack])
    assert f"PublishOutputFnGetAtt{key_id}" in text, f"{stack} does not use the key"
    return "cross-stack"


def uses_key(value: object, templates: dict, stack: str) -> bool:
    expected = key_reference(templates, stack)
    if expected == "cross-stack":
        return "Fn::GetStackOutput" in json.dumps(value) and "DataKey" in json.dumps(value)
    return value == expected


def kms_grants(templates: dict) -> dict[str, dict[str, set[str]]]:
    """kms: actions by role logical id, by the service they are limited to ("" none)."""
    roles: dict[str, dict[str, set[str]]] = {}
    for name, policy in resources_of(templates, "AWS::IAM::Policy").items():
        stack = name.split("/")[0]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            kms_actions = {a for a in actions if a.startswith("kms:")}
            if not kms_actions:
                continue
            assert {a for a in actions if not a.startswith("kms:")} == set(), statement
            via = json.dumps(statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService", ""))
            service = next((s for s in ("sqs", "s3", "dynamodb", "secretsmanager") if f'"{s}.' in via), "")
            for role in policy["Properties"]["Roles"]:
                role_id = f"{stack}/{role['Ref']}"
                roles.setdefault(role_id, {}).setdefault(service, set()).update(kms_actions)
    return roles


# --- Config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"encryption": "sse"}, "encryption='sse' is not one of aws-managed, kms"),
        ({"encryption": "kms", "kms_key_arn": "alias/mine"}, "kms_key_arn='alias/mine' is not a KMS key ARN"),
        ({"kms_key_arn": OWN_KEY_ARN}, "kms_key_arn applies to encryption=kms only"),
        ({"worker_root_volume_gb": 8}, "worker_root_volume_gb=8 is outside"),
        ({"training_vpc": "perhaps"}, "training_vpc='perhaps' is not a boolean"),
    ],
)
def test_bad_encryption_and_hardening_settings_are_refused(context, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        DeploymentConfig.from_context({**cdk_json_context(), **context})


def test_the_default_is_aws_managed_keys():
    config = DeploymentConfig.from_context(cdk_json_context())
    assert (config.encryption, config.kms, config.kms_key_arn) == ("aws-managed", False, "")


# --- Keys -----------------------------------------------------------------------------------------


def test_kms_creates_one_rotated_retained_key_for_the_deployment(kms_app):
    _, t = kms_app
    keys = resources_of(t, "AWS::KMS::Key")
    assert list(keys) == ["storage/" + next(k for k in t["storage"]["Resources"] if k.startswith("DataKey"))]
    (key,) = keys.values()
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    statements = {s.get("Sid"): s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    logs = statements["CloudWatchLogsOfThisAccount"]
    assert "logs." in json.dumps(logs["Principal"]) and "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]
    alarms = statements["CloudWatchAlarmsToTheEncryptedTopic"]  # alarm_topic_arn is set
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(alarms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_kms_every_store_uses_the_key(kms_app):
    _, t = kms_app
    buckets = resources_of(t, "AWS::S3::Bucket")
    for name, bucket in buckets.items():
        (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        default = rule["ServerSideEncryptionByDefault"]
        if "AccessLogsBucket" in name:  # S3 server access logs can only go to SSE-S3 buckets
            assert default == {"SSEAlgorithm": "AES256"}
            continue
        assert default["SSEAlgorithm"] == "aws:kms" and rule["BucketKeyEnabled"] is True, name
        assert uses_key(default["KMSMasterKeyID"], t, name.split("/")[0]), name
    assert len(buckets) == 5  # trigger, masks, training and the two access-log buckets
    for name, queue in resources_of(t, "AWS::SQS::Queue").items():
        assert uses_key(queue["Properties"]["KmsMasterKeyId"], t, name.split("/")[0]), name
        assert "SqsManagedSseEnabled" not in queue["Properties"]
    for name, group in resources_of(t, "AWS::Logs::LogGroup").items():
        assert uses_key(group["Properties"]["KmsKeyId"], t, name.split("/")[0]), name
    assert len(resources_of(t, "AWS::Logs::LogGroup")) == 6  # worker, enumerator, events, sfn, 2 flow logs
    (table,) = resources_of(t, "AWS::DynamoDB::Table").values()
    sse = table["Properties"]["SSESpecification"]
    assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS" and uses_key(sse["KMSMasterKeyId"], t, "storage")
    (enumerator,) = [
        f for n, f in resources_of(t, "AWS::Lambda::Function").items() if "TileEnumerator" in n
    ]
    assert uses_key(enumerator["Properties"]["KmsKeyArn"], t, "ingest")
    (machine,) = resources_of(t, "AWS::StepFunctions::StateMachine").values()
    definition = json.dumps(machine["Properties"]["DefinitionString"])
    assert '\\"KmsKeyId\\":\\"' in definition and '\\"VolumeKmsKeyId\\":\\"' in definition


def test_kms_each_role_gets_exactly_the_key_actions_it_needs(kms_app):
    _, t = kms_app
    grants = {role.split("/", 1)[1].rsplit("_", 1)[0]: by_service for role, by_service in kms_grants(t).items()}
    grants = {next(k for k in ("TileEnumerator", "WorkerJobRole", "SageMakerTrainingRole") if role.startswith(k)): v
              for role, v in grants.items()}
    sqs_producer = set(KEY_USE["sqs-send"]) | set(KEY_USE["sqs-consume"])
    assert grants == {
        # Reads the AOI, writes the job record, sends work units (and, as its on-failure
        # destination, failed events).
        "TileEnumerator": {
            "s3": {"kms:Decrypt"},
            "dynamodb": set(KEY_USE["dynamodb"]),
            "sqs": set(KEY_USE["sqs-send"]),
        },
        # Consumes work units, dead-letters malformed ones, writes masks (one PUT each) and
        # results, reads the active model from the registry and the imagery secret.
        "WorkerJobRole": {
            "sqs": sqs_producer,
            "dynamodb": set(KEY_USE["dynamodb"]),
            "s3": {"kms:Decrypt", "kms:GenerateDataKey"},
            "secretsmanager": {"kms:Decrypt"},
        },
        # Channels, model archive and checkpoints through S3; SageMaker itself encrypts the
        # model archive and grants the volume encryption.
        "SageMakerTrainingRole": {
            "s3": {"kms:Decrypt", "kms:GenerateDataKey"},
            "": {"kms:CreateGrant", "kms:DescribeKey", "kms:Encrypt"},
        },
    }
    for statements in (
        p["Properties"]["PolicyDocument"]["Statement"] for p in resources_of(t, "AWS::IAM::Policy").values()
    ):
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(a in ("kms:*", "kms:ReEncrypt*", "kms:GenerateDataKey*") for a in actions), statement
            if actions == ["kms:CreateGrant"] or actions == "kms:CreateGrant":
                assert statement["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}


def test_kms_with_the_users_own_key(own_key_app):
    _, t = own_key_app
    assert resources_of(t, "AWS::KMS::Key") == {}
    text = json.dumps(t)
    assert text.count(OWN_KEY_ARN) >= 10 and "PublishOutputFnGetAttDataKey" not in text
    (table,) = resources_of(t, "AWS::DynamoDB::Table").values()
    assert table["Properties"]["SSESpecification"]["KMSMasterKeyId"] == OWN_KEY_ARN
    for name, group in resources_of(t, "AWS::Logs::LogGroup").items():
        assert group["Properties"]["KmsKeyId"] == OWN_KEY_ARN, name


def test_aws_managed_adds_no_key_and_no_key_grants():
    config = DeploymentConfig.from_context(cdk_json_context())
    assert not config.kms  # the snapshots of the default context hold the templates themselves


# --- Hosts and training network -----------------------------------------------------------------


def test_batch_instances_boot_from_a_hardened_launch_template(kms_app):
    lg, t = kms_app
    (template,) = resources_of(t, "AWS::EC2::LaunchTemplate").values()
    data = template["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpPutResponseHopLimit": 1, "HttpTokens": "required"}
    (root,) = data["BlockDeviceMappings"]
    assert root["DeviceName"] == "/dev/xvda"
    assert root["Ebs"] == {
        "DeleteOnTermination": True,
        "Encrypted": True,
        "VolumeSize": lg.config.worker_root_volume_gb,
        "VolumeType": "gp3",
    }
    assert "UserData" not in data  # AWS Batch would need MIME multi-part user data
    (ce,) = resources_of(t, "AWS::Batch::ComputeEnvironment").values()
    (template_id,) = [k for k, v in t["inference"]["Resources"].items() if v["Type"] == "AWS::EC2::LaunchTemplate"]
    assert ce["Properties"]["ComputeResources"]["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": template_id}


def test_training_in_a_vpc_with_network_isolation(kms_app):
    _, t = kms_app
    training = Template.from_json(t["training"])
    training.resource_count_is("AWS::EC2::NatGateway", 0)
    training.resource_count_is("AWS::EC2::InternetGateway", 0)
    (machine,) = resources_of(t, "AWS::StepFunctions::StateMachine").values()
    definition = json.dumps(machine["Properties"]["DefinitionString"])
    assert '\\"EnableNetworkIsolation\\":true' in definition
    assert '\\"VpcConfig\\":{' in definition
    assert "TrainingVpctrainingSubnet" in definition  # the isolated subnets
    (role_policy,) = [
        p for n, p in resources_of(t, "AWS::IAM::Policy").items() if "SageMakerTrainingRole" in n
    ]
    actions = json.dumps(role_policy["Properties"]["PolicyDocument"])
    assert "ec2:CreateNetworkInterface" in actions and "ec2:Vpc" in actions


def test_training_without_vpc_by_default():
    config = DeploymentConfig.from_context(cdk_json_context())
    assert (config.training_vpc, config.training_network_isolation) == (False, False)

"""The CDK app: synthesized in-process once (with the cdk-nag checks, so an unacknowledged finding
fails here as it fails `cdk synth`) and checked with aws_cdk.assertions against the definitions in
looking_glass.resources / looking_glass.settings; plus the config parsing and one real
`npx cdk synth` through the pinned CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

aws_cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")

from aws_cdk.assertions import Match, Template  # noqa: E402

from looking_glass import resources  # noqa: E402
from looking_glass.settings import EnumeratorSettings, WorkerSettings  # noqa: E402
from stacks import ConfigError, DeploymentConfig, build_app, cdk_json_context  # noqa: E402
from stacks.config import DEFAULTS  # noqa: E402
from stacks.environment import ENV_MODEL_S3_URI  # noqa: E402
from stacks.ingest import HANDLER  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CDK_CLI = REPO / "node_modules" / ".bin" / "cdk"
QUIET_NODE_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_VERSION_CHECK": "true"}


@pytest.fixture(scope="module")
def synthesized():
    """The app as `cdk synth` builds it (cdk.json context), synthesized once."""
    os.environ.update(QUIET_NODE_ENV)
    lg = build_app(nag=True)
    assembly = lg.app.synth()  # runs the cdk-nag validation plugin; raises on findings
    templates = {
        name: Template.from_json(assembly.get_stack_by_name(stack.stack_name).template)
        for name, stack in (
            ("storage", lg.storage),
            ("inference", lg.inference),
            ("ingest", lg.ingest),
            ("training", lg.training),
        )
    }
    return lg, templates


def only_resource(template: Template, resource_type: str) -> dict:
    found = template.find_resources(resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {list(found)}"
    return next(iter(found.values()))


def env_with_placeholders(variables: dict) -> dict[str, str]:
    """A Lambda/Batch environment with CloudFormation intrinsics replaced by a placeholder."""
    return {k: v if isinstance(v, str) else "resolved-at-deploy" for k, v in variables.items()}


# --- Storage -----------------------------------------------------------------------------------


def test_results_table_uses_the_resources_definition(synthesized):
    _, t = synthesized
    definition = resources.table_definition("any")
    table = only_resource(t["storage"], "AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["KeySchema"] == definition["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(definition["AttributeDefinitions"], key=str)
    assert props["BillingMode"] == definition["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Retain"
    assert "TableName" not in props  # physical name left to CloudFormation


def test_trigger_bucket_is_versioned_encrypted_private_and_ssl_only(synthesized):
    _, t = synthesized
    t["storage"].has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": Match.object_like({"ServerSideEncryptionConfiguration": Match.any_value()}),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
        },
    )
    for bucket_id in t["storage"].find_resources("AWS::S3::Bucket"):
        t["storage"].has_resource_properties(
            "AWS::S3::BucketPolicy",
            {
                "Bucket": {"Ref": bucket_id},
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                },
            },
        )


# --- Inference ---------------------------------------------------------------------------------


def test_tile_queue_settings_and_redrive_come_from_resources(synthesized):
    _, t = synthesized
    tmpl = t["inference"]
    queues = tmpl.find_resources("AWS::SQS::Queue")
    tile_queue = next(q for q in queues.values() if "RedrivePolicy" in q["Properties"])
    props = tile_queue["Properties"]
    assert props["RedrivePolicy"]["maxReceiveCount"] == resources.TILE_QUEUE_MAX_RECEIVE_COUNT
    assert props["VisibilityTimeout"] == resources.TILE_QUEUE_VISIBILITY_TIMEOUT_S
    assert props["MessageRetentionPeriod"] == resources.QUEUE_RETENTION_S
    assert props["SqsManagedSseEnabled"] is True
    dlq_id = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert queues[dlq_id]["Properties"]["MessageRetentionPeriod"] == resources.QUEUE_RETENTION_S
    # An alarm on the DLQ depth.
    tmpl.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}],
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
        },
    )


def test_vpc_has_no_nat_and_reaches_aws_through_endpoints(synthesized):
    _, t = synthesized
    tmpl = t["inference"]
    tmpl.resource_count_is("AWS::EC2::NatGateway", 0)
    tmpl.resource_count_is("AWS::EC2::InternetGateway", 0)  # worker_subnets=isolated
    endpoints = tmpl.find_resources("AWS::EC2::VPCEndpoint").values()
    kinds = sorted(e["Properties"].get("VpcEndpointType", "Gateway") for e in endpoints)
    assert kinds.count("Gateway") == 2  # S3, DynamoDB
    services = json.dumps([e["Properties"]["ServiceName"] for e in endpoints])
    for service in ("s3", "dynamodb", "sqs", "ecr.api", "ecr.dkr", "logs", "secretsmanager", "ecs-agent"):
        assert f".{service}" in services or f"{service}\"" in services, service


def test_batch_compute_environment_is_managed_gpu_spot_from_zero(synthesized):
    lg, t = synthesized
    t["inference"].has_resource_properties(
        "AWS::Batch::ComputeEnvironment",
        {
            "Type": "managed",
            "ComputeResources": Match.object_like(
                {
                    "Type": "SPOT",
                    "MinvCpus": 0,
                    "MaxvCpus": lg.config.max_vcpus,
                    "InstanceTypes": list(lg.config.instance_types),
                    "Ec2Configuration": [{"ImageType": "ECS_AL2023_NVIDIA"}],
                }
            ),
        },
    )
    assert lg.config.instance_types == tuple(cdk_json_context()["instance_types"])


def test_job_queue_uses_the_compute_environment(synthesized):
    _, t = synthesized
    ce_id = next(iter(t["inference"].find_resources("AWS::Batch::ComputeEnvironment")))
    t["inference"].has_resource_properties(
        "AWS::Batch::JobQueue",
        {
            "ComputeEnvironmentOrder": [
                {"ComputeEnvironment": {"Fn::GetAtt": [ce_id, "ComputeEnvironmentArn"]}, "Order": 1}
            ],
            "State": "ENABLED",
        },
    )


def test_job_definition_asks_for_a_gpu_retries_spot_reclaims_and_sets_worker_env(synthesized):
    lg, t = synthesized
    job = only_resource(t["inference"], "AWS::Batch::JobDefinition")["Properties"]
    container = job["ContainerProperties"]
    requirements = {r["Type"]: r["Value"] for r in container["ResourceRequirements"]}
    assert requirements == {
        "GPU": "1",
        "VCPU": str(lg.config.worker_vcpus),
        "MEMORY": str(lg.config.worker_memory_mib),
    }
    assert job["PlatformCapabilities"] == ["EC2"]
    assert job["Timeout"]["AttemptDurationSeconds"] == lg.config.worker_timeout_minutes * 60
    assert job["RetryStrategy"] == {
        "Attempts": lg.config.worker_retry_attempts,
        "EvaluateOnExit": [
            {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
            {"Action": "EXIT", "OnReason": "*"},
        ],
    }
    env = env_with_placeholders({e["Name"]: e["Value"] for e in container["Environment"]})
    assert set(resources.DeployedResources.from_env(env).to_env()) <= set(env)
    settings = WorkerSettings.from_env(env)  # what the worker will parse at start-up
    assert settings.tile_url_template == cdk_json_context()["tile_url_template"]
    assert ENV_MODEL_S3_URI not in env  # model_s3_uri is "" in cdk.json
    assert "JobRoleArn" in container


def test_worker_role_can_consume_tiles_write_results_masks_and_dead_letter(synthesized):
    _, t = synthesized
    policies = t["inference"].find_resources("AWS::IAM::Policy")
    worker = next(p for k, p in policies.items() if k.startswith("WorkerJobRole"))
    actions = set()
    for statement in worker["Properties"]["PolicyDocument"]["Statement"]:
        a = statement["Action"]
        actions.update([a] if isinstance(a, str) else a)
    for needed in (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "s3:PutObject",
    ):
        assert needed in actions, needed


def test_the_optional_settings_synthesize_and_pass_cdk_nag():
    """Model from S3, public worker subnets, on-demand, images from ECR: one more synth."""
    worker_image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/lg-worker:1.2"
    lg = build_app(
        context={
            "model_s3_uri": "s3://my-models/looking-glass/v3/model.tar.gz",
            "worker_subnets": "public",
            "spot": False,
            "training_spot": False,
            "worker_image": worker_image,
            "training_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/lg-train:7",
        },
        nag=True,
    )
    assembly = lg.app.synth()  # raises on cdk-nag findings
    tmpl = Template.from_json(assembly.get_stack_by_name(lg.inference.stack_name).template)
    ce = only_resource(tmpl, "AWS::Batch::ComputeEnvironment")["Properties"]["ComputeResources"]
    assert ce["Type"] == "EC2"
    tmpl.resource_count_is("AWS::EC2::InternetGateway", 1)
    tmpl.resource_count_is("AWS::EC2::NatGateway", 0)
    assert all(  # no interface endpoints needed with a route to the internet
        e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
        for e in tmpl.find_resources("AWS::EC2::VPCEndpoint").values()
    )
    container = only_resource(tmpl, "AWS::Batch::JobDefinition")["Properties"]["ContainerProperties"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env[ENV_MODEL_S3_URI] == "s3://my-models/looking-glass/v3/model.tar.gz"
    assert "lg-worker:1.2" in json.dumps(container["Image"])
    policies = json.dumps(tmpl.find_resources("AWS::IAM::Policy"))
    assert ":s3:::my-models/looking-glass/v3/*" in policies  # the worker may read the model
    assert "repository/lg-worker" in policies  # and pull its image


# --- Ingest ------------------------------------------------------------------------------------


def test_trigger_notification_filters_on_the_resources_prefix_and_suffix(synthesized):
    _, t = synthesized
    function_id = next(
        k for k, v in t["ingest"].find_resources("AWS::Lambda::Function").items()
        if v["Properties"].get("Handler") == HANDLER
    )
    notification = only_resource(t["ingest"], "Custom::S3BucketNotifications")["Properties"]
    (config,) = notification["NotificationConfiguration"]["LambdaFunctionConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    rules = {r["Name"]: r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": resources.TRIGGER_PREFIX, "suffix": resources.TRIGGER_SUFFIX}
    assert config["LambdaFunctionArn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    t["ingest"].has_resource_properties(
        "AWS::Lambda::Permission",
        {"Action": "lambda:InvokeFunction", "Principal": "s3.amazonaws.com"},
    )


def test_enumerator_lambda_runtime_handler_and_environment(synthesized):
    lg, t = synthesized
    functions = t["ingest"].find_resources("AWS::Lambda::Function", {"Properties": {"Handler": HANDLER}})
    assert len(functions) == 1
    props = next(iter(functions.values()))["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["MemorySize"] == 1024
    assert props["Timeout"] == 15 * 60
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert "LogGroup" in props["LoggingConfig"]

    variables = props["Environment"]["Variables"]
    for name in (
        resources.ENV_TRIGGER_BUCKET,
        resources.ENV_MASKS_BUCKET,
        resources.ENV_RESULTS_TABLE,
        resources.ENV_TILE_QUEUE_URL,
        resources.ENV_TILE_DLQ_URL,
    ):
        assert name in variables, name
    env = env_with_placeholders(variables)
    settings = EnumeratorSettings.from_env(env)  # what the handler parses on every invocation
    context = cdk_json_context()
    assert settings.launcher == "batch"
    assert settings.tiles_per_message == context["tiles_per_message"]
    assert settings.max_tiles_per_job == context["max_tiles_per_job"]
    assert settings.max_workers == lg.config.max_workers
    assert settings.batch_job_queue and settings.batch_job_definition


def test_enumerator_has_an_on_failure_queue_and_batch_submit(synthesized):
    _, t = synthesized
    t["ingest"].has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}}},
    )
    statements = json.dumps(
        [p["Properties"]["PolicyDocument"] for p in t["ingest"].find_resources("AWS::IAM::Policy").values()]
    )
    for action in ("batch:SubmitJob", "sqs:SendMessage", "dynamodb:PutItem", "s3:GetObjectVersion"):
        assert action in statements, action


# --- Training ----------------------------------------------------------------------------------


def test_training_state_machine_runs_a_sagemaker_training_job_to_completion(synthesized):
    _, t = synthesized
    machine = only_resource(t["training"], "AWS::StepFunctions::StateMachine")["Properties"]
    definition = json.dumps(machine["DefinitionString"])
    assert "sagemaker:createTrainingJob.sync" in definition
    assert '\\"HyperParameters.$\\":\\"$.hyperparameters\\"' in definition
    assert '\\"EnableManagedSpotTraining\\":true' in definition
    assert "MaxWaitTimeInSeconds" in definition and "CheckpointConfig" in definition
    assert '\\"ChannelName\\":\\"train\\"' in definition and '\\"ChannelName\\":\\"validation\\"' in definition
    assert machine["TracingConfiguration"] == {"Enabled": True}
    # The state machine may pass (only) the training role to SageMaker.
    t["training"].has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "iam:PassRole",
                                "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                            }
                        )
                    ]
                )
            }
        },
    )


# --- Config ------------------------------------------------------------------------------------


def test_cdk_json_sets_every_setting_and_parses():
    context = cdk_json_context()
    assert set(DEFAULTS) <= set(context), set(DEFAULTS) - set(context)
    config = DeploymentConfig.from_context(context)
    assert config.max_workers == config.max_vcpus // config.worker_vcpus  # max_workers: null


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_vcpus", "lots"),
        ("max_vcpus", True),
        ("spot", "maybe"),
        ("instance_types", "m5.large"),  # no GPU
        ("tiles_per_message", 0),
        ("tile_url_template", "https://tiles.example.com/{z}/{x}.png"),
        ("worker_subnets", "private"),
        ("log_retention_days", 31),
        ("model_s3_uri", "https://bucket/model.keras"),
    ],
)
def test_a_bad_context_value_fails_with_its_key(key, value):
    with pytest.raises(ConfigError, match=rf"^{key}\b"):
        DeploymentConfig.from_context({**cdk_json_context(), key: value})


def test_a_bad_context_value_fails_the_app_build():
    with pytest.raises(ConfigError, match="max_vcpus='lots' is not an integer"):
        build_app(context={"max_vcpus": "lots"}, nag=False)


def test_command_line_context_strings_are_parsed():
    config = DeploymentConfig.from_context(
        {"max_vcpus": "128", "spot": "false", "instance_types": "g5.xlarge, g6.xlarge", "max_workers": "7"}
    )
    assert (config.max_vcpus, config.spot, config.instance_types, config.max_workers) == (
        128, False, ("g5.xlarge", "g6.xlarge"), 7,
    )


def test_building_the_app_does_not_import_tensorflow():
    code = (
        "import sys; from stacks import build_app; build_app(nag=False); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**os.environ, **QUIET_NODE_ENV},
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --- The real CLI --------------------------------------------------------------------------------


@pytest.mark.skipif(not CDK_CLI.exists(), reason="node_modules missing: run `npm ci` for the pinned CDK CLI")
def test_npx_cdk_synth(tmp_path):
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not installed")
    out_dir = tmp_path / "cdk.out"
    # cdk.json runs `.venv/bin/python app.py`; point it at this interpreter in case the venv
    # lives elsewhere (CI).
    result = subprocess.run(
        [npx, "cdk", "synth", "--quiet", "--no-notices", "-o", str(out_dir),
         "--app", f"{sys.executable} app.py"],
        cwd=REPO,
        env={**os.environ, **QUIET_NODE_ENV},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    templates = sorted(p.name for p in out_dir.glob("*.template.json"))
    assert templates == [
        "LookingGlassInference.template.json",
        "LookingGlassIngest.template.json",
        "LookingGlassStorage.template.json",
        "LookingGlassTraining.template.json",
    ]

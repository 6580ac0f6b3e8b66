"""The CDK app: synthesized in-process once (with the cdk-nag checks, so an unacknowledged finding
fails here as it fails `cdk synth`) and checked with aws_cdk.assertions against the definitions in
looking_glass.runtime.resources / looking_glass.runtime.settings; plus the config parsing and one real
`npx cdk synth` through the pinned CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

aws_cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")

from aws_cdk.assertions import Match, Template  # noqa: E402
from conftest import REPO_ROOT  # noqa: E402

from looking_glass.runtime import resources  # noqa: E402
from looking_glass.runtime.settings import EnumeratorSettings, WorkerSettings  # noqa: E402
from stacks import ConfigError, DeploymentConfig, build_app, cdk_json_context, stack_names  # noqa: E402
from stacks.config import DEFAULTS, unknown_context_keys  # noqa: E402
from stacks.environment import ENV_MODEL_S3_URI  # noqa: E402
from stacks.ingest import HANDLER  # noqa: E402

REPO = REPO_ROOT
CDK_CLI = REPO / "node_modules" / ".bin" / "cdk"
QUIET_NODE_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_VERSION_CHECK": "true"}


STACKS = ("storage", "inference", "ingest", "training", "monitoring")
# The other network, the imagery secret, alarm notifications and another deployment name.
VARIANT_CONTEXT = {
    "stack_name": "LgVariant",
    "worker_subnets": "isolated",
    "tile_url_template": "https://my-tiles.s3.eu-west-1.amazonaws.com/{z}/{x}/{y}.png",
    "imagery_secret_name": "looking-glass/imagery-token",
    "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops-alarms",
    "enumerator_reserved_concurrency": 0,
}


def _synth(context=None):
    os.environ.update(QUIET_NODE_ENV)
    lg = build_app(context=context, nag=True)
    assembly = lg.app.synth()  # runs the cdk-nag validation plugin; raises on findings
    templates = {
        name: Template.from_json(assembly.get_stack_by_name(getattr(lg, name).stack_name).template)
        for name in STACKS
    }
    return lg, templates


@pytest.fixture(scope="module")
def synthesized():
    """The app as `cdk synth` builds it (cdk.json context), synthesized once."""
    return _synth()


@pytest.fixture(scope="module")
def variant():
    """The app with VARIANT_CONTEXT, synthesized once (cdk-nag too)."""
    return _synth(VARIANT_CONTEXT)


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


def _endpoint_kinds(tmpl: Template) -> tuple[list[str], str]:
    endpoints = tmpl.find_resources("AWS::EC2::VPCEndpoint").values()
    kinds = sorted(e["Properties"].get("VpcEndpointType", "Gateway") for e in endpoints)
    return kinds, json.dumps([e["Properties"]["ServiceName"] for e in endpoints])


def _worker_subnet_ids(tmpl: Template) -> list:
    ce = only_resource(tmpl, "AWS::Batch::ComputeEnvironment")["Properties"]["ComputeResources"]
    return [s["Ref"] for s in ce["Subnets"]]


def test_default_network_is_private_subnets_with_a_nat_gateway(synthesized):
    lg, t = synthesized
    tmpl = t["inference"]
    assert lg.config.worker_subnets == "private"
    tmpl.resource_count_is("AWS::EC2::NatGateway", lg.config.nat_gateways)
    tmpl.resource_count_is("AWS::EC2::InternetGateway", 1)  # for the NAT gateway only
    subnets = tmpl.find_resources("AWS::EC2::Subnet")
    workers = _worker_subnet_ids(tmpl)
    assert len(workers) == 2
    for subnet_id in workers:  # no public IPs on the workers' subnets
        assert subnets[subnet_id]["Properties"]["MapPublicIpOnLaunch"] is False
        assert "workers" in subnet_id.lower()
    # Their default route goes to the NAT gateway.
    routes = tmpl.find_resources("AWS::EC2::Route")
    assert any("NatGatewayId" in r["Properties"] for r in routes.values())
    kinds, services = _endpoint_kinds(tmpl)
    assert kinds == ["Gateway", "Gateway"]  # S3 and DynamoDB stay off the NAT (free)
    assert ".s3" in services and ".dynamodb" in services


def test_isolated_network_reaches_aws_through_endpoints_only(variant):
    _, t = variant
    tmpl = t["inference"]
    tmpl.resource_count_is("AWS::EC2::NatGateway", 0)
    tmpl.resource_count_is("AWS::EC2::InternetGateway", 0)
    kinds, services = _endpoint_kinds(tmpl)
    assert kinds.count("Gateway") == 2  # S3, DynamoDB
    for service in ("s3", "dynamodb", "sqs", "ecr.api", "ecr.dkr", "logs", "secretsmanager", "ecs-agent"):
        assert f".{service}" in services or f"{service}\"" in services, service


def test_isolated_workers_with_a_tile_server_on_the_internet_fail_synth():
    with pytest.raises(ConfigError, match=r"^worker_subnets=isolated has no route to the tile server 'tiles\.example\.com'"):
        build_app(context={"worker_subnets": "isolated"}, nag=False)


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
    assert ":s3:::my-models/looking-glass/v3/model.tar.gz" in policies  # the worker may read the model
    assert ":s3:::my-models/looking-glass/v3/*" not in policies  # and nothing else there
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
    # The job's metric definitions are the entry point's own (looking_glass.training.contract).
    from looking_glass.training.contract import METRIC_DEFINITIONS

    encoded = json.dumps(json.dumps({"MetricDefinitions": METRIC_DEFINITIONS}, separators=(",", ":"))[1:-1])[1:-1]
    assert encoded in definition, encoded
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


# --- Cross-cutting: buckets, outputs, least privilege, secrets ---------------------------------

PUBLIC_ACCESS_BLOCKED = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}


@pytest.mark.parametrize("stack", ["storage", "training"])
def test_every_bucket_is_ssl_only_encrypted_private_versioned_and_logged(synthesized, stack):
    _, t = synthesized
    tmpl = t[stack]
    buckets = tmpl.find_resources("AWS::S3::Bucket")
    log_buckets = [k for k in buckets if k.startswith("AccessLogsBucket")]
    assert len(log_buckets) == 1, list(buckets)
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
        for p in tmpl.find_resources("AWS::S3::BucketPolicy").values()
    }
    for bucket_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, bucket_id
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), bucket_id
        assert props["PublicAccessBlockConfiguration"] == PUBLIC_ACCESS_BLOCKED, bucket_id
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        assert bucket["DeletionPolicy"] == "Retain", bucket_id
        assert any(
            st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for st in policies[bucket_id]
        ), bucket_id
        if bucket_id not in log_buckets:
            logging = props["LoggingConfiguration"]
            assert logging["DestinationBucketName"] == {"Ref": log_buckets[0]}, bucket_id
            assert logging["LogFilePrefix"].endswith("/")
    # Log delivery is allowed by the log bucket's policy, for exactly the logged buckets.
    delivery = [
        st for st in policies[log_buckets[0]]
        if st.get("Principal") == {"Service": "logging.s3.amazonaws.com"}
    ]
    assert delivery and all(st["Action"] == "s3:PutObject" for st in delivery)


def test_results_table_has_deletion_protection_and_the_jobs_index(synthesized):
    _, t = synthesized
    props = only_resource(t["storage"], "AWS::DynamoDB::Table")["Properties"]
    assert props["DeletionProtectionEnabled"] is True
    definition = resources.table_definition("any")
    assert [i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])] == [
        i["IndexName"] for i in definition.get("GlobalSecondaryIndexes", [])
    ]


def _outputs(template: Template) -> dict:
    return template.to_json().get("Outputs", {})


@pytest.mark.parametrize("fixture", ["synthesized", "variant"])
def test_stack_names_and_outputs_are_the_cli_contract(request, fixture):
    lg, t = request.getfixturevalue(fixture)
    assert [s.stack_name for s in lg.stacks] == [
        f"{lg.config.stack_name}{suffix}" for suffix in resources.STACK_SUFFIXES
    ]
    if fixture == "synthesized":
        assert lg.config.stack_name == resources.DEFAULT_STACK_NAME
    expected = {
        "storage": (resources.OUTPUT_TRIGGER_BUCKET, resources.OUTPUT_MASKS_BUCKET, resources.OUTPUT_RESULTS_TABLE),
        "inference": (resources.OUTPUT_TILE_QUEUE_URL, resources.OUTPUT_TILE_DLQ_URL, resources.OUTPUT_JOB_QUEUE,
                      resources.OUTPUT_JOB_DEFINITION),
        "training": (resources.OUTPUT_TRAINING_BUCKET, resources.OUTPUT_TRAINING_STATE_MACHINE),
        "monitoring": (resources.OUTPUT_DASHBOARD_URL,),
    }
    for stack, keys in expected.items():
        outputs = _outputs(t[stack])
        for key in keys:
            assert key in outputs, (stack, key)
            assert not outputs[key]["Value"] == "", key
    url = json.dumps(_outputs(t["monitoring"])[resources.OUTPUT_DASHBOARD_URL]["Value"])
    assert f"#dashboards/dashboard/{lg.config.stack_name}" in url and "AWS::Region" in url
    # `retry --stack` submits its workers with these: the Ref of the job definition is the ARN of
    # its current revision (a redeploy that changes it registers a new one).
    inference = t["inference"].to_json()["Resources"]
    (definition,) = [k for k, r in inference.items() if r["Type"] == "AWS::Batch::JobDefinition"]
    (queue,) = [k for k, r in inference.items() if r["Type"] == "AWS::Batch::JobQueue"]
    assert _outputs(t["inference"])[resources.OUTPUT_JOB_DEFINITION]["Value"] == {"Ref": definition}
    assert _outputs(t["inference"])[resources.OUTPUT_JOB_QUEUE]["Value"] == {"Fn::GetAtt": [queue, "JobQueueArn"]}


# Actions that take no resource (the service requires Resource "*"), each with the reason:
WILDCARD_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray has no resource types (Lambda and Step Functions tracing)",
    "xray:PutTelemetryRecords": "X-Ray has no resource types",
    "xray:GetSamplingRules": "X-Ray has no resource types",
    "xray:GetSamplingTargets": "X-Ray has no resource types",
    "ecr:GetAuthorizationToken": "account-wide registry token, no resource type",
    "cloudwatch:PutMetricData": "no resource type; limited by a cloudwatch:namespace condition",
    # Step Functions log delivery to CloudWatch Logs (vended logs) requires "*" for these.
    "logs:CreateLogDelivery": "vended log delivery",
    "logs:DeleteLogDelivery": "vended log delivery",
    "logs:GetLogDelivery": "vended log delivery",
    "logs:ListLogDeliveries": "vended log delivery",
    "logs:UpdateLogDelivery": "vended log delivery",
    "logs:PutResourcePolicy": "vended log delivery",
    "logs:DescribeResourcePolicies": "vended log delivery",
    "logs:DescribeLogGroups": "vended log delivery",
}


def _statements(template: Template):
    for logical_id, resource in template.to_json()["Resources"].items():
        props = resource.get("Properties", {})
        docs = []
        if resource["Type"] == "AWS::IAM::Policy":
            docs.append(props["PolicyDocument"])
        elif resource["Type"] == "AWS::IAM::Role":
            docs.extend(p["PolicyDocument"] for p in props.get("Policies", []))
        for doc in docs:
            for statement in doc["Statement"]:
                yield logical_id, statement


@pytest.mark.parametrize("fixture", ["synthesized", "variant"])
def test_no_resource_wildcard_except_where_the_service_requires_it(request, fixture):
    _, t = request.getfixturevalue(fixture)
    for stack in STACKS:
        for logical_id, statement in _statements(t[stack]):
            targets = statement.get("Resource")
            targets = targets if isinstance(targets, list) else [targets]
            if "*" not in targets:
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            unexpected = [a for a in actions if a not in WILDCARD_RESOURCE_ACTIONS]
            assert not unexpected, f"{stack}/{logical_id}: {unexpected} on Resource '*'"
            assert statement["Effect"] == "Allow"
            if "cloudwatch:PutMetricData" in actions:
                assert "cloudwatch:namespace" in json.dumps(statement.get("Condition", {}))


def test_processes_get_item_access_to_the_table_but_not_scan_delete_or_indexes(synthesized):
    _, t = synthesized
    for stack in ("inference", "ingest"):
        text = json.dumps([s for _, s in _statements(t[stack]) if "dynamodb" in json.dumps(s["Action"])])
        # BatchWriteItem: the worker writes tile packs with UpdateItem (a whole-item write of a
        # pack would drop other writers' tiles), and the enumerator never needs it
        banned = ("dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:*", "dynamodb:BatchWriteItem")
        for action in banned:
            assert f'"{action}"' not in text, (stack, action)
        assert "/index/" not in text, stack
        assert "dynamodb:PutItem" in text and "dynamodb:UpdateItem" in text


def test_imagery_secret_name_gives_the_worker_read_on_that_secret_only(synthesized, variant):
    lg, t = variant
    tmpl = t["inference"]
    container = only_resource(tmpl, "AWS::Batch::JobDefinition")["Properties"]["ContainerProperties"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env[resources.ENV_IMAGERY_SECRET] == VARIANT_CONTEXT["imagery_secret_name"]
    worker = [s for lid, s in _statements(tmpl) if lid.startswith("WorkerJobRole")]
    secret_statements = [s for s in worker if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])]
    assert len(secret_statements) == 1
    assert f":secret:{VARIANT_CONTEXT['imagery_secret_name']}-??????" in json.dumps(secret_statements[0]["Resource"])
    # Without the setting: no variable and no secret permission.
    _, default = synthesized
    container = only_resource(default["inference"], "AWS::Batch::JobDefinition")["Properties"]["ContainerProperties"]
    assert resources.ENV_IMAGERY_SECRET not in {e["Name"] for e in container["Environment"]}
    assert "secretsmanager:" not in json.dumps(list(_statements(default["inference"])))


def test_the_tile_url_comes_from_config_only(synthesized):
    """The worker's tile template is a constant of the job definition; the Lambda (which reads
    the AOI) has no way to set it: not in its environment, no permission to register job
    definitions or override container environment beyond SubmitJob on this definition."""
    lg, t = synthesized
    container = only_resource(t["inference"], "AWS::Batch::JobDefinition")["Properties"]["ContainerProperties"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["LG_TILE_URL_TEMPLATE"] == lg.config.tile_url_template
    ingest = json.dumps(list(_statements(t["ingest"])))
    assert "batch:RegisterJobDefinition" not in ingest
    fn = t["ingest"].find_resources("AWS::Lambda::Function", {"Properties": {"Handler": HANDLER}})
    assert "LG_TILE_URL_TEMPLATE" not in json.dumps(fn)


GEOTIFF_CONTEXT = {
    "tile_url_template": "",
    "imagery_geotiff": "s3://my-imagery/kigali/2024/ortho.tif",
    "imagery_bands": [3, 2, 1],
    "worker_subnets": "isolated",  # an S3 GeoTIFF needs no internet route
}


def test_a_geotiff_on_s3_as_the_imagery_source():
    lg = build_app(context=GEOTIFF_CONTEXT, nag=True)
    assembly = lg.app.synth()  # cdk-nag included
    tmpl = Template.from_json(assembly.get_stack_by_name(lg.inference.stack_name).template)
    container = only_resource(tmpl, "AWS::Batch::JobDefinition")["Properties"]["ContainerProperties"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["LG_IMAGERY_GEOTIFF"] == GEOTIFF_CONTEXT["imagery_geotiff"]
    assert env["LG_IMAGERY_BANDS"] == "3,2,1"
    assert "LG_TILE_URL_TEMPLATE" not in env
    reads = [s for lid, s in _statements(tmpl) if lid.startswith("WorkerJobRole") and "s3:GetObject" in json.dumps(s["Action"])]
    assert any("my-imagery/kigali/2024/ortho.tif" in json.dumps(s["Resource"]) for s in reads)
    assert not any("my-imagery/*" in json.dumps(s["Resource"]) for s in reads)  # that object only


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"imagery_geotiff": "s3://bucket/x.tif"}, "set exactly one imagery source"),
        ({"tile_url_template": ""}, "set exactly one imagery source"),
        ({"tile_url_template": "", "imagery_geotiff": "s3://bucket/x.png"}, "imagery_geotiff: .*does not end in .tif"),
        ({"tile_url_template": "", "imagery_geotiff": "/data/x.tif"}, "imagery_geotiff='/data/x.tif' is not an s3://"),
        ({"imagery_bands": "3,2,1"}, "imagery_bands applies to imagery_geotiff only"),
        ({"tile_url_template": "", "imagery_geotiff": "s3://bucket/x.tif", "imagery_bands": "1,2"}, "imagery_bands=.*give 1 band"),
        ({"tile_url_template": "", "imagery_geotiff": "s3://bucket/x.tif", "imagery_secret_name": "tok"}, "imagery_secret_name applies to tile_url_template only"),
        (
            {"tile_url_template": "http://tiles.example.com/{z}/{x}/{y}.png", "imagery_secret_name": "tok"},
            "imagery_secret_name: the imagery token is only sent over HTTPS",
        ),
    ],
)
def test_bad_imagery_source_settings_are_refused(context, message):
    with pytest.raises(ConfigError, match=message):
        DeploymentConfig.from_context({**cdk_json_context(), **context})


# --- Monitoring ----------------------------------------------------------------------------------


def test_dashboard_shows_queues_tiles_batch_jobs_and_the_lambda(synthesized):
    lg, t = synthesized
    tmpl = t["monitoring"]
    dashboard = only_resource(tmpl, "AWS::CloudWatch::Dashboard")["Properties"]
    assert dashboard["DashboardName"] == lg.config.stack_name
    body = json.dumps(dashboard["DashboardBody"])
    for needle in (
        "ApproximateNumberOfMessagesVisible",  # tile queue and DLQ depth
        "ApproximateNumberOfMessagesNotVisible",
        f'\\"{resources.METRICS_NAMESPACE}\\",\\"{resources.METRIC_TILES_DONE}\\",\\"{resources.METRIC_DIMENSION_DEPLOYMENT}\\",\\"{lg.config.stack_name}\\"',
        "BatchJobs",
        "AWS/Lambda",
        "Errors",
        "Duration",
        "Tiles done per minute",
        "alarms",
    ):
        assert needle in body, needle


def test_the_worker_metric_dimension_matches_the_dashboard(synthesized):
    lg, t = synthesized
    container = only_resource(t["inference"], "AWS::Batch::JobDefinition")["Properties"]["ContainerProperties"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env[resources.ENV_DEPLOYMENT] == lg.config.stack_name


def test_batch_job_state_changes_are_counted_by_status(synthesized):
    lg, t = synthesized
    tmpl = t["monitoring"]
    rule = only_resource(tmpl, "AWS::Events::Rule")["Properties"]
    assert rule["EventPattern"]["source"] == ["aws.batch"]
    assert rule["EventPattern"]["detail-type"] == ["Batch Job State Change"]
    assert "jobQueue" in rule["EventPattern"]["detail"]
    (target,) = rule["Targets"]
    log_group_id = next(iter(tmpl.find_resources("AWS::Logs::LogGroup")))
    assert log_group_id in json.dumps(target["Arn"])
    policy = json.loads(json.dumps(only_resource(tmpl, "AWS::Logs::ResourcePolicy")["Properties"]))
    assert "events.amazonaws.com" in json.dumps(policy) and "logs:PutLogEvents" in json.dumps(policy)
    metric_filter = only_resource(tmpl, "AWS::Logs::MetricFilter")["Properties"]
    (transformation,) = metric_filter["MetricTransformations"]
    assert transformation["MetricName"] == "BatchJobs"
    assert transformation["Dimensions"] == [{"Key": "Status", "Value": "$.detail.status"}]


def test_alarms_cover_failures_and_stalls_and_notify_the_topic_when_set(synthesized, variant):
    _, t = synthesized
    alarms = t["monitoring"].find_resources("AWS::CloudWatch::Alarm")
    names = sorted(k.rstrip("0123456789ABCDEF") for k in alarms)
    assert names == ["EnumeratorErrors", "EnumeratorNearTimeout", "TilesStalled", "WorkerJobsFailed"]
    assert not any("AlarmActions" in a["Properties"] for a in alarms.values())
    _, vt = variant
    topic = VARIANT_CONTEXT["alarm_topic_arn"]
    for stack in ("monitoring", "inference", "ingest"):  # incl. the DLQ and failure-queue alarms
        for alarm in vt[stack].find_resources("AWS::CloudWatch::Alarm").values():
            assert alarm["Properties"]["AlarmActions"] == [topic]


def test_enumerator_has_reserved_concurrency_unless_zero(synthesized, variant):
    for fixture, expected in ((synthesized, cdk_json_context()["enumerator_reserved_concurrency"]), (variant, None)):
        _, t = fixture
        (fn,) = t["ingest"].find_resources("AWS::Lambda::Function", {"Properties": {"Handler": HANDLER}}).values()
        assert fn["Properties"].get("ReservedConcurrentExecutions") == expected


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
        ("worker_subnets", "nat"),
        ("zoom", 17),
        ("nat_gateways", 3),
        ("stack_name", "9lives"),
        ("stack_name", "Looking Glass"),
        ("imagery_secret_name", "token with spaces"),
        ("alarm_topic_arn", "arn:aws:sqs:us-east-1:123456789012:q"),
        ("enumerator_reserved_concurrency", -1),
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


def test_an_unknown_context_key_is_refused_with_the_known_keys():
    with pytest.raises(ConfigError) as raised:
        DeploymentConfig.from_context({**cdk_json_context(), "max_vcpu": 8, "spto": "false"})
    message = str(raised.value)
    assert message.startswith("unknown context keys max_vcpu (did you mean max_vcpus?), spto (did you mean spot?)")
    assert "the known keys are: " in message and all(key in message for key in DEFAULTS)
    with pytest.raises(ConfigError, match="unknown context key max_vcpu "):
        build_app(context={"max_vcpu": 8}, nag=False)


def test_cdk_own_context_keys_are_not_ours_to_check():
    assert unknown_context_keys(cdk_json_context()) == []  # the feature flags (@aws-cdk/...)
    cdk_keys = [
        "aws:cdk:version-reporting",  # set by the CLI
        "aws:cdk:bundling-stacks",
        "availability-zones:account=123456789012:region=eu-west-1",  # cdk.context.json look-ups
        "acknowledged-issue-numbers",
    ]
    assert unknown_context_keys([*cdk_keys, *DEFAULTS]) == []
    assert unknown_context_keys(["maxVcpus", "max-vcpus"]) == ["max-vcpus", "maxVcpus"]


def test_app_py_refuses_an_unknown_key_given_as_the_cli_gives_it():
    # `cdk synth -c max_vcpu=8`: the CLI hands the app its context in CDK_CONTEXT_JSON.
    env = {**os.environ, **QUIET_NODE_ENV, "CDK_CONTEXT_JSON": json.dumps({**cdk_json_context(), "max_vcpu": "8"})}
    env.pop("CDK_OUTDIR", None)
    out = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 1
    assert "invalid CDK context (cdk.json or -c): unknown context key max_vcpu (did you mean max_vcpus?)" in out.stderr


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
    # No credentials and no instance metadata: synth must not need an AWS account.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(QUIET_NODE_ENV, AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_CONFIG_FILE=os.devnull)
    # cdk.json runs `.venv/bin/python app.py`; point it at this interpreter in case the venv
    # lives elsewhere (CI).
    result = subprocess.run(
        [npx, "cdk", "synth", "--quiet", "--no-notices", "-o", str(out_dir),
         "--app", f"{sys.executable} app.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    templates = sorted(p.name for p in out_dir.glob("*.template.json"))
    assert templates == sorted(f"{name}.template.json" for name in stack_names().values())
    assert len(templates) == len(resources.STACK_SUFFIXES) == 5

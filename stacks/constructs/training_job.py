"""The training job of the segmentation model: the role SageMaker runs it as, and a Step Functions
state machine that runs one SageMaker training job and waits for it (see ``stacks.training``).

Managed spot training: the ``SageMakerCreateTrainingJob`` construct (aws-cdk-lib 2.275) has no
``EnableManagedSpotTraining``, ``CheckpointConfig`` or ``MaxWaitTimeInSeconds``. The state is
therefore rendered by that construct (parameters, image asset binding, IAM) and emitted as a
``CustomState`` with those three fields added; its IAM statements go to the state machine role.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, IgnoreMode, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from looking_glass.training.contract import (  # one definition with the entry point and the CLI
    CHECKPOINTS_PREFIX,
    INIT_PREFIX,
    METRIC_DEFINITIONS,
    MODELS_PREFIX,
    TRAIN_PREFIX,
    VALIDATION_PREFIX,
)

from ..assets import DOCKER_CONTEXT_EXCLUDES, REPO_ROOT, parse_ecr_image
from ..config import DeploymentConfig
from ..nag import acknowledge, arn_of
from .encryption import grant_key_use

SAGEMAKER_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# With encryption=kms, SageMaker uses the training role's credentials on the deployment's key to
# encrypt the model archive it writes (OutputDataConfig.KmsKeyId: kms:Encrypt, DescribeKey) and
# to create the grant through which the instance's storage volume is encrypted (VolumeKmsKeyId:
# kms:CreateGrant for an AWS resource).


class TrainingJobRole:
    """The role ``SageMakerTrainingRole`` SageMaker runs the training job as: the training bucket
    ``bucket`` and the job's own logs and metrics, nothing else; added to ``scope`` (see
    ``stacks.constructs``)."""

    def __init__(self, scope: Construct, *, bucket: s3.IBucket, key: kms.IKey | None = None) -> None:
        self.role = iam.Role(
            scope,
            "SageMakerTrainingRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Looking Glass training job: training bucket, training logs and metrics",
        )
        # Read on the channels and write on the output prefix are granted by the training task
        # (SageMakerCreateTrainingJob binds its S3 locations to this role); checkpoints are not
        # known to it.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects(f"{CHECKPOINTS_PREFIX}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[
                    Stack.of(scope).format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name=f"{SAGEMAKER_LOG_GROUP}:*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource type; scoped by namespace
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            )
        )
        if key is not None:
            # Channels read, model archive and checkpoints written (multipart) through S3.
            grant_key_use(key, self.role, ["s3-write"])
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["kms:DescribeKey", "kms:Encrypt"], resources=[key.key_arn]
                )
            )
            self.role.add_to_policy(  # grants for AWS resources (the training volume) only
                iam.PolicyStatement(
                    actions=["kms:CreateGrant"],
                    resources=[key.key_arn],
                    conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
                )
            )

        self._acknowledge_nag_findings(bucket)

    def _acknowledge_nag_findings(self, bucket: s3.IBucket) -> None:
        bucket_arn = arn_of(bucket)
        acknowledge(
            self.role,
            [
                # Granted by SageMakerCreateTrainingJob for its S3 locations (CDK's grant sets).
                "AwsSolutions-IAM5[Action::s3:GetBucket*]",
                "AwsSolutions-IAM5[Action::s3:GetObject*]",
                "AwsSolutions-IAM5[Action::s3:List*]",
                "AwsSolutions-IAM5[Action::s3:Abort*]",
                "AwsSolutions-IAM5[Action::s3:DeleteObject*]",
                f"AwsSolutions-IAM5[Resource::{bucket_arn}/{TRAIN_PREFIX}*]",
                f"AwsSolutions-IAM5[Resource::{bucket_arn}/{VALIDATION_PREFIX}*]",
                f"AwsSolutions-IAM5[Resource::{bucket_arn}/{INIT_PREFIX}*]",
                f"AwsSolutions-IAM5[Resource::{bucket_arn}/{MODELS_PREFIX}*]",
                f"AwsSolutions-IAM5[Resource::{bucket_arn}/{CHECKPOINTS_PREFIX}*]",
            ],
            "The training job reads its channels and writes model artifacts and checkpoints "
            "under fixed prefixes of the training bucket only; object keys below them are chosen "
            "at run time (the read/write action sets come from CDK's S3 grants for the task).",
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:{SAGEMAKER_LOG_GROUP}:*]",
            "SageMaker writes training logs to streams it names per job in this log group.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData (limited by namespace condition) and "
            "ecr:GetAuthorizationToken have no resource-level permissions.",
        )


class TrainingStateMachine:
    """The state machine ``TrainingStateMachine`` (logs ``StateMachineLogs``): name the job, take
    the execution's hyperparameters (or none), run the SageMaker training job ``TrainModel`` as
    ``role`` on the channels of ``bucket`` and wait for it; added to ``scope`` (see
    ``stacks.constructs``).

    With ``key`` (``encryption=kms``) the model archive, the instance's storage volume and the
    state machine's logs are encrypted with it. ``training_vpc``: the job runs in the isolated
    subnets of the VPC ``TrainingVpc`` (``vpc``; no internet route, S3 through a gateway
    endpoint, rejected traffic logged) with the security group CDK makes for it.
    ``training_network_isolation``: the training container gets no network access at all
    (SageMaker still moves the channels, the model and the checkpoints to and from S3)."""

    def __init__(
        self,
        scope: Construct,
        *,
        config: DeploymentConfig,
        bucket: s3.IBucket,
        role: iam.IRole,
        key: kms.IKey | None = None,
    ) -> None:
        self._scope = scope
        self._key = key
        # CDK's task grants read/write on the channel and output locations of the bucket it is
        # given, with kms:Encrypt and ReEncrypt on the bucket's key on top; given a reference that
        # knows no key, it grants the S3 actions only (the key use: TrainingJobRole).
        self._bucket = (
            bucket
            if key is None
            else s3.Bucket.from_bucket_attributes(
                scope, "TrainingBucketRef", bucket_arn=bucket.bucket_arn, bucket_name=bucket.bucket_name
            )
        )
        self._role = role
        self.vpc = self._training_vpc(config, key) if config.training_vpc else None
        stack = Stack.of(scope)
        definition = self._definition(config)
        state_machine_logs = logs.LogGroup(
            scope, "StateMachineLogs", retention=config.log_retention, encryption_key=key
        )
        # The job may take its whole (spot) wait time; an hour on top for the state transitions.
        job_hours = (
            config.training_max_wait_hours if config.training_spot else config.training_max_runtime_hours
        )
        self.state_machine = sfn.StateMachine(
            scope,
            "TrainingStateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.hours(job_hours + 1),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=state_machine_logs, level=sfn.LogLevel.ALL),
        )
        training_jobs = stack.format_arn(service="sagemaker", resource="training-job", resource_name="*")
        for statement in self._training_task._task_policies or []:  # see module docstring
            resolved = stack.resolve(statement.to_statement_json())
            if resolved.get("Resource") == "*" and resolved.get("Action") == "sagemaker:ListTags":
                # CDK grants ListTags on "*", but it takes a resource: the training jobs.
                statement = iam.PolicyStatement(actions=["sagemaker:ListTags"], resources=[training_jobs])
            self.state_machine.add_to_role_policy(statement)

        if self.vpc is not None:
            self._grant_network_interfaces()
        self._acknowledge_nag_findings()

    def _grant_network_interfaces(self) -> None:
        """What SageMaker does as the training role to place the job in the VPC: create (and
        delete) its network interfaces in the training subnets with the task's security group."""
        stack = Stack.of(self._scope)
        assert self.vpc is not None

        def ec2_arn(resource: str, name: str) -> str:
            return stack.format_arn(service="ec2", resource=resource, resource_name=name)

        subnets = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids
        groups = [g.security_group_id for g in self._training_task.connections.security_groups]
        interfaces = ec2_arn("network-interface", "*")
        self._role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateNetworkInterface"],
                resources=[
                    interfaces,
                    *(ec2_arn("subnet", s) for s in subnets),
                    *(ec2_arn("security-group", g) for g in groups),
                ],
            )
        )
        self._role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                resources=[interfaces],
                conditions={"ArnEquals": {"ec2:Vpc": ec2_arn("vpc", self.vpc.vpc_id)}},
            )
        )
        self._role.add_to_principal_policy(
            iam.PolicyStatement(  # no resource-level permissions
                actions=[
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs",
                ],
                resources=["*"],
            )
        )
        acknowledge(
            self._role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface/*]",
            "SageMaker creates the training job's network interfaces (ids unknown beforehand) in "
            "the training subnets with the task's security group; deleting them is limited to "
            "interfaces of the training VPC.",
        )

    def _definition(self, config: DeploymentConfig) -> sfn.IChainable:
        has_hyperparameters = sfn.Choice(self._scope, "HyperparametersGiven?")
        no_hyperparameters = sfn.Pass(
            self._scope,
            "NoHyperparameters",
            result=sfn.Result.from_object({}),
            result_path="$.hyperparameters",
        )
        # One name per execution: the training job's, and its checkpoint prefix (a job must not
        # resume from another job's checkpoints).
        name_job = sfn.Pass(
            self._scope,
            "NameTrainingJob",
            parameters={"name.$": "States.Format('looking-glass-{}', States.UUID())"},
            result_path="$.job",
        )
        train, train_from_init = self._train_states(config)
        # Fine-tuning (train --stack --init): the starting model in the init channel.
        name_job.next(
            sfn.Choice(self._scope, "InitModelGiven?")
            .when(sfn.Condition.is_present("$.init"), train_from_init)
            .otherwise(train)
        )
        return has_hyperparameters.when(
            sfn.Condition.is_present("$.hyperparameters"), name_job
        ).otherwise(no_hyperparameters.next(name_job))

    def _train_states(self, config: DeploymentConfig) -> tuple[sfn.CustomState, sfn.CustomState]:
        task = tasks.SageMakerCreateTrainingJob(
            self._scope,
            "TrainModelTask",
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,  # .sync: wait for the job
            training_job_name=sfn.JsonPath.string_at("$.job.name"),
            role=self._role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=self._training_image(config),
                training_input_mode=tasks.InputMode.FILE,
            ),
            input_data_config=[
                _channel("train", self._bucket, TRAIN_PREFIX),
                _channel("validation", self._bucket, VALIDATION_PREFIX),
            ],
            output_data_config=tasks.OutputDataConfig(
                s3_output_location=tasks.S3Location.from_bucket(self._bucket, MODELS_PREFIX),
            ),
            resource_config=tasks.ResourceConfig(
                instance_count=1,
                instance_type=ec2.InstanceType(config.training_ec2_instance_type),
                volume_size=Size.gibibytes(config.training_volume_gb),
            ),
            vpc_config=None
            if self.vpc is None
            else tasks.VpcConfig(
                vpc=self.vpc, subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
            ),
            enable_network_isolation=config.training_network_isolation or None,
            stopping_condition=tasks.StoppingCondition(
                max_runtime=Duration.hours(config.training_max_runtime_hours)
            ),
            result_path="$.training",
        )
        self._training_task = task

        state = dict(task.to_state_json())
        state.pop("End", None)
        state.pop("Next", None)
        parameters = dict(state["Parameters"])
        # Hyperparameters: the whole object from the execution input (JsonPath).
        parameters.pop("HyperParameters", None)
        parameters["HyperParameters.$"] = "$.hyperparameters"
        # The entry point's per-epoch metric line, parsed into CloudWatch metrics of the job.
        parameters["AlgorithmSpecification"] = {
            **parameters["AlgorithmSpecification"],
            "MetricDefinitions": METRIC_DEFINITIONS,
        }
        if self._key is not None:
            # Set here rather than given to the task, which would grant kms:Encrypt,
            # ReEncrypt* and GenerateDataKey* on the key (TrainingJobRole grants what is used).
            parameters["OutputDataConfig"] = {**parameters["OutputDataConfig"], "KmsKeyId": self._key.key_arn}
            parameters["ResourceConfig"] = {**parameters["ResourceConfig"], "VolumeKmsKeyId": self._key.key_arn}
        if config.training_spot:
            parameters["EnableManagedSpotTraining"] = True
            checkpoints = self._bucket.s3_url_for_object(CHECKPOINTS_PREFIX)
            parameters["CheckpointConfig"] = {
                "S3Uri.$": f"States.Format('{checkpoints}{{}}/', $.job.name)",
                "LocalPath": "/opt/ml/checkpoints",
            }
            parameters["StoppingCondition"] = {
                **parameters["StoppingCondition"],
                "MaxWaitTimeInSeconds": int(Duration.hours(config.training_max_wait_hours).to_seconds()),
            }
        state["Parameters"] = parameters
        # The same job with a third channel, init (data/init/: the model to fine-tune).
        self._bucket.grant_read(self._role, f"{INIT_PREFIX}*")
        init_channel = {
            "ChannelName": "init",
            "DataSource": {"S3DataSource": {
                "S3Uri": self._bucket.s3_url_for_object(INIT_PREFIX),
                "S3DataType": "S3Prefix",
                "S3DataDistributionType": "FullyReplicated",
            }},
        }
        from_init = {**state, "Parameters": {**parameters,
                                             "InputDataConfig": [*parameters["InputDataConfig"], init_channel]}}
        return (sfn.CustomState(self._scope, "TrainModel", state_json=state),
                sfn.CustomState(self._scope, "TrainModelFromInit", state_json=from_init))

    def _training_vpc(self, config: DeploymentConfig, key: kms.IKey | None) -> ec2.Vpc:
        vpc = ec2.Vpc(
            self._scope,
            "TrainingVpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="training", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
            flow_logs={
                "RejectedTraffic": ec2.FlowLogOptions(traffic_type=ec2.FlowLogTrafficType.REJECT)
            },
        )
        flow_log_group = vpc.node.find_child("RejectedTraffic").node.find_child("LogGroup")
        flow_log_group.node.default_child.retention_in_days = config.log_retention_days
        if key is not None:
            flow_log_group.node.default_child.kms_key_id = key.key_arn
        return vpc

    def _training_image(self, config: DeploymentConfig) -> tasks.DockerImage:
        if config.training_image:
            ecr_image = parse_ecr_image(config.training_image)
            if ecr_image is None:
                return tasks.DockerImage.from_registry(config.training_image)
            arn, name, tag = ecr_image  # through the repository, so the training role may pull
            repository = ecr.Repository.from_repository_attributes(
                self._scope, "TrainingImageRepository", repository_arn=arn, repository_name=name
            )
            return tasks.DockerImage.from_ecr_repository(repository, tag)
        return tasks.DockerImage.from_asset(
            self._scope,
            "TrainingImage",
            directory=str(REPO_ROOT),
            file="training/Dockerfile",
            exclude=DOCKER_CONTEXT_EXCLUDES,
            ignore_mode=IgnoreMode.DOCKER,
            platform=ecr_assets.Platform.LINUX_AMD64,
            display_name="looking-glass-training",
        )

    def _acknowledge_nag_findings(self) -> None:
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "Step Functions log delivery (logs:*LogDelivery, DescribeLogGroups, resource "
            "policies) and X-Ray tracing have no resource-level permissions.",
        )
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:training-job/*]",
            "Training job names are generated per execution (looking-glass-<uuid>), so the state "
            "machine may create, describe, stop, tag and list tags of training jobs in general.",
        )


def _channel(name: str, bucket: s3.IBucket, prefix: str) -> tasks.Channel:
    return tasks.Channel(
        channel_name=name,
        data_source=tasks.DataSource(
            s3_data_source=tasks.S3DataSource(
                s3_location=tasks.S3Location.from_bucket(bucket, prefix),
                s3_data_type=tasks.S3DataType.S3_PREFIX,
                s3_data_distribution_type=tasks.S3DataDistributionType.FULLY_REPLICATED,
            )
        ),
    )

"""InferenceStack: the tile work queue and its dead-letter queue, the VPC, and the AWS Batch GPU
environment that runs the inference worker (``batch_jobs/worker/main.py``).

Queue settings come from ``looking_glass.runtime.resources`` (the embedded run uses the same ones).
Workers are array jobs submitted by the enumerator Lambda; each drains the queue and exits when
it stays empty, so the compute environment scales from 0 vCPUs back to 0.
"""

from __future__ import annotations

import re

from aws_cdk import Aws, CfnOutput, Duration, IgnoreMode, Size, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from looking_glass.runtime import resources

from .assets import DOCKER_CONTEXT_EXCLUDES, REPO_ROOT, parse_ecr_image
from .config import DeploymentConfig
from .constructs import grant_table_data
from .environment import resource_environment, worker_environment
from .queues import terminal_queue
from .nag import MASKS_BUCKET_ARN_OUTPUT, acknowledge, cross_stack_output

# Batch reports this status reason when EC2 reclaims a Spot instance ("Host EC2 (instance
# i-...) terminated."): the job did nothing wrong, so it is retried. Anything else exits: the
# worker's own failures (bad settings = 2, model cannot be loaded = 3) do not heal by retrying,
# and unfinished SQS messages are redelivered to the next worker anyway.
SPOT_RECLAIMED_STATUS_REASON = "Host EC2*"


class InferenceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        trigger_bucket: s3.IBucket,
        masks_bucket: s3.IBucket,
        results_table: dynamodb.ITable,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # --- Work queue ---------------------------------------------------------------------
        self.tile_dlq, self.dlq_alarm = terminal_queue(
            self,
            "TileDeadLetterQueue",
            nag_reason="This is the dead-letter queue of the tile queue; an alarm watches its depth.",
            alarm_description=(
                "Work units reached the tile dead-letter queue: their tiles have no result. "
                "Inspect the messages, fix the cause and redrive them to the tile queue."
            ),
        )
        self.tile_queue = sqs.Queue(
            self,
            "TileQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(resources.TILE_QUEUE_VISIBILITY_TIMEOUT_S),
            retention_period=Duration.seconds(resources.QUEUE_RETENTION_S),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.tile_dlq, max_receive_count=resources.TILE_QUEUE_MAX_RECEIVE_COUNT
            ),
        )
        # --- Network ------------------------------------------------------------------------
        self.vpc = self._vpc(config)

        # --- Batch --------------------------------------------------------------------------
        self.compute_environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "GpuComputeEnvironment",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=self._worker_subnet_type(config)),
            instance_types=[ec2.InstanceType(t) for t in config.instance_types],
            use_optimal_instance_classes=False,
            spot=config.spot,
            minv_cpus=0,
            maxv_cpus=config.max_vcpus,
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
            update_to_latest_image_version=True,
            replace_compute_environment=False,
        )
        self.job_queue = batch.JobQueue(
            self,
            "JobQueue",
            compute_environments=[
                batch.OrderedComputeEnvironment(compute_environment=self.compute_environment, order=1)
            ],
        )

        self.job_role = iam.Role(
            self,
            "WorkerJobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Looking Glass inference worker: tile queue, results table, masks bucket",
        )
        self.log_group = logs.LogGroup(
            self,
            "WorkerLogs",
            retention=config.log_retention,
        )
        self.worker_container = container = batch.EcsEc2ContainerDefinition(
            self,
            "WorkerContainer",
            image=self._worker_image(config),
            gpu=1,
            cpu=config.worker_vcpus,
            memory=Size.mebibytes(config.worker_memory_mib),
            job_role=self.job_role,
            environment={
                **resource_environment(
                    trigger_bucket=trigger_bucket,
                    masks_bucket=masks_bucket,
                    results_table=results_table,
                    tile_queue=self.tile_queue,
                    tile_dlq=self.tile_dlq,
                ),
                **worker_environment(config),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="worker", log_group=self.log_group),
        )
        self.job_definition = batch.EcsJobDefinition(
            self,
            "WorkerJobDefinition",
            container=container,
            timeout=Duration.minutes(config.worker_timeout_minutes),
            retry_attempts=config.worker_retry_attempts,
            retry_strategies=[
                batch.RetryStrategy.of(
                    batch.Action.RETRY,
                    batch.Reason.custom(on_status_reason=SPOT_RECLAIMED_STATUS_REASON),
                ),
                batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),
            ],
            propagate_tags=True,
        )

        # --- Permissions of the worker --------------------------------------------------------
        grant_table_data(results_table, self.job_role)  # batch reads for dedup, transact writes
        self.job_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[masks_bucket.arn_for_objects("*")])
        )
        self.tile_queue.grant_consume_messages(self.job_role)
        self.tile_dlq.grant_send_messages(self.job_role)  # malformed work units go straight there
        if config.model_s3_uri:
            statement = _model_read_statement(config.model_s3_uri)
            self.job_role.add_to_policy(statement)
            acknowledge(
                self.job_role,
                f"AwsSolutions-IAM5[Resource::{statement.resources[0].replace(Aws.PARTITION, '<AWS::Partition>')}]",
                "The worker reads the model named by model_s3_uri and the files beside it (its "
                "JSON sidecar), nothing else of that bucket.",
            )

        if config.imagery_geotiff:
            # Read on that one object: GDAL reads it in place with ranged GETs.
            bucket, _, key = config.imagery_geotiff[len("s3://"):].partition("/")
            self.job_role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}/{key}"],
                )
            )

        if config.imagery_secret_name:
            # Read on that one secret (by name: its ARN ends in a random suffix, hence -??????).
            self.imagery_secret = secretsmanager.Secret.from_secret_name_v2(
                self, "ImagerySecret", config.imagery_secret_name
            )
            self.imagery_secret.grant_read(self.job_role)
            acknowledge(
                self.job_role,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:"
                f"<AWS::AccountId>:secret:{config.imagery_secret_name}-??????]",
                "Read on the imagery secret named by imagery_secret_name only; Secrets Manager "
                "appends six random characters to a secret's ARN, so a name-based grant ends in "
                "-??????.",
            )

        self._acknowledge_nag_findings(masks_bucket)

        CfnOutput(self, resources.OUTPUT_TILE_QUEUE_URL, value=self.tile_queue.queue_url)
        CfnOutput(self, resources.OUTPUT_TILE_DLQ_URL, value=self.tile_dlq.queue_url)
        CfnOutput(self, "JobQueueArn", value=self.job_queue.job_queue_arn)
        CfnOutput(self, "JobDefinitionArn", value=self.job_definition.job_definition_arn)

    # -----------------------------------------------------------------------------------------

    def _vpc(self, config: DeploymentConfig) -> ec2.Vpc:
        """Two AZs; the workers' subnets per ``worker_subnets`` (stacks.config.WORKER_SUBNETS):

        - ``private`` (default): no public IPs; the internet (the tile server) through
          ``nat_gateways`` NAT gateways in small public subnets.
        - ``isolated``: no internet route at all; AWS services through VPC endpoints, so the tiles
          must come from S3 (the config refuses any other tile host).
        - ``public``: public IPs and the internet gateway, no NAT; the security group of the
          compute environment allows no inbound traffic.

        S3 and DynamoDB are always reached through (free) gateway endpoints, so results and
        masks never pay NAT data processing. Interface endpoints only where there is no other way
        to reach AWS (isolated); VPC flow logs record rejected traffic.
        """
        subnet_type = self._worker_subnet_type(config)
        subnets = [ec2.SubnetConfiguration(name="workers", subnet_type=subnet_type, cidr_mask=20)]
        if subnet_type == ec2.SubnetType.PRIVATE_WITH_EGRESS:
            subnets.insert(
                0, ec2.SubnetConfiguration(name="nat", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=26)
            )
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=config.nat_gateways if subnet_type == ec2.SubnetType.PRIVATE_WITH_EGRESS else 0,
            subnet_configuration=subnets,
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
            flow_logs={
                "RejectedTraffic": ec2.FlowLogOptions(traffic_type=ec2.FlowLogTrafficType.REJECT)
            },
        )
        if subnet_type != ec2.SubnetType.PRIVATE_ISOLATED:
            return vpc  # internet route: interface endpoints (about $15/month each) not needed
        endpoint_subnets = ec2.SubnetSelection(subnet_type=subnet_type)
        for name, service in {
            "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
            "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
            "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
            "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
            "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            # The ECS container agent on the Batch instances registers and reports through
            # these; without them an instance with no internet route never joins the cluster
            # and jobs stay RUNNABLE.
            "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
            "EcsAgent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
            "EcsTelemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
        }.items():
            vpc.add_interface_endpoint(
                f"{name}Endpoint", service=service, subnets=endpoint_subnets, private_dns_enabled=True
            )
        return vpc

    @staticmethod
    def _worker_subnet_type(config: DeploymentConfig) -> ec2.SubnetType:
        return {
            "private": ec2.SubnetType.PRIVATE_WITH_EGRESS,
            "isolated": ec2.SubnetType.PRIVATE_ISOLATED,
            "public": ec2.SubnetType.PUBLIC,
        }[config.worker_subnets]

    def _worker_image(self, config: DeploymentConfig) -> ecs.ContainerImage:
        if config.worker_image:
            ecr_image = parse_ecr_image(config.worker_image)
            if ecr_image is None:
                return ecs.ContainerImage.from_registry(config.worker_image)
            arn, name, tag = ecr_image  # through the repository, so the execution role may pull
            repository = ecr.Repository.from_repository_attributes(
                self, "WorkerImageRepository", repository_arn=arn, repository_name=name
            )
            return ecs.ContainerImage.from_ecr_repository(repository, tag)
        # Built by `cdk deploy` (not by synth) from the repository root, which the image needs
        # for looking_glass/ and pyproject.toml; the excludes reduce the context to those.
        return ecs.ContainerImage.from_asset(
            str(REPO_ROOT),
            file="batch_jobs/Dockerfile",
            exclude=DOCKER_CONTEXT_EXCLUDES,
            ignore_mode=IgnoreMode.DOCKER,
            platform=ecr_assets.Platform.LINUX_AMD64,  # g4dn/g5 are x86_64
            display_name="looking-glass-worker",
        )

    def _acknowledge_nag_findings(self, masks_bucket: s3.IBucket) -> None:
        if self.vpc.isolated_subnets:  # the interface endpoints exist only then
            acknowledge(
                self.vpc,
                "AwsSolutions-EC23",
                "The rule cannot evaluate the interface endpoints' security groups: CDK allows 443 "
                "from the VPC CIDR only (a GetAtt), not from 0.0.0.0/0.",
            )
        acknowledge(
            self.compute_environment,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]",
            "The ECS instance role policy AWS Batch documents for ECS compute environments (ECS "
            "agent registration, image pulls); it grants no access to project data.",
        )
        masks_arn = cross_stack_output(Stack.of(masks_bucket).stack_name, MASKS_BUCKET_ARN_OUTPUT)
        acknowledge(
            self.job_role,
            f"AwsSolutions-IAM5[Resource::{masks_arn}/*]",
            "The worker writes one mask object per tile under keys it derives from the job and "
            "tile, so s3:PutObject (only) is granted on the objects of the masks bucket.",
        )
        acknowledge(
            self.worker_container,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken (execution role) has no resource-level permissions.",
        )


def _model_read_statement(uri: str) -> iam.PolicyStatement:
    """Read access to the model object and the files next to it (sidecar JSON or archive)."""
    match = re.match(r"^s3://([^/]+)/(.+)$", uri)
    assert match, uri  # validated by DeploymentConfig
    bucket, key = match.groups()
    prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    return iam.PolicyStatement(
        actions=["s3:GetObject"],
        resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}/{prefix}*"],
    )

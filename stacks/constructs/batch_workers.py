"""The AWS Batch GPU workers: compute environment, job queue and the job definition of the
inference worker (``batch_jobs/worker/main.py``), with the role the worker runs as.

Workers are array jobs submitted by the enumerator Lambda; each drains the tile queue and exits
when it stays empty, so the compute environment scales from 0 vCPUs back to 0.
"""

from __future__ import annotations

import re

from aws_cdk import Aws, Duration, IgnoreMode, Size, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from looking_glass.model.fetch import ARCHIVE_SUFFIXES
from looking_glass.model.registry import REGISTRY_PREFIX

from ..assets import DOCKER_CONTEXT_EXCLUDES, REPO_ROOT, parse_ecr_image
from ..config import DeploymentConfig
from ..environment import active_model_parameter, resource_environment, worker_environment
from ..nag import MASKS_BUCKET_ARN_OUTPUT, acknowledge, cross_stack_output
from .encryption import grant_consume, grant_key_use, grant_send
from .grants import WORKER_TABLE_ACTIONS, grant_table_data

# Batch reports this status reason when EC2 reclaims a Spot instance ("Host EC2 (instance
# i-...) terminated."): the job did nothing wrong, so it is retried. Anything else exits: the
# worker's own failures (bad settings = 2, model cannot be loaded = 3) do not heal by retrying,
# and unfinished SQS messages are redelivered to the next worker anyway.
SPOT_RECLAIMED_STATUS_REASON = "Host EC2*"
# Where the worker writes its result objects in the masks bucket, one per work unit
# (looking_glass.pipeline.unit_results.result_key: masks/<job id>/<unit id>[.<part>].npz); its role
# may put objects there only.
MASKS_PREFIX = "masks/"
# The root device of the ECS-optimized Amazon Linux 2023 (NVIDIA) AMI the instances boot.
ROOT_DEVICE = "/dev/xvda"


class BatchWorkers:
    """The GPU compute environment (``GpuComputeEnvironment``, 0 to ``max_vcpus``), its job queue
    (``JobQueue``) and the worker's job definition (``WorkerJobDefinition``: container, log group
    ``WorkerLogs``, role ``WorkerJobRole`` with only what the worker needs), added to ``scope``
    (see ``stacks.constructs``). The instances boot from the launch template
    ``WorkerLaunchTemplate``: IMDSv2 only, with a hop limit of 1 (a container, one hop further
    away, cannot reach the instance metadata and so not the instance role), and an encrypted gp3
    root volume of ``worker_root_volume_gb`` for the AMI, the worker image (CUDA and TensorFlow,
    several GiB unpacked) and its layers while they are pulled.

    The worker consumes ``tile_queue``, sends malformed work units to ``tile_dlq``, reads and
    writes the results table, writes masks, and reads the model, GeoTIFF and imagery secret the
    settings name.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        config: DeploymentConfig,
        key: kms.IKey | None = None,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        trigger_bucket: s3.IBucket,
        masks_bucket: s3.IBucket,
        results_table: dynamodb.ITable,
        tile_queue: sqs.IQueue,
        tile_dlq: sqs.IQueue,
    ) -> None:
        self._scope = scope
        self._key = key
        self.launch_template = ec2.LaunchTemplate(
            scope,
            "WorkerLaunchTemplate",
            require_imdsv2=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=1,
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE,
                    volume=ec2.BlockDeviceVolume.ebs(
                        config.worker_root_volume_gb,
                        encrypted=True,  # the account's EBS key (aws/ebs)
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        self.compute_environment = batch.ManagedEc2EcsComputeEnvironment(
            scope,
            "GpuComputeEnvironment",
            vpc=vpc,
            vpc_subnets=subnets,
            instance_types=[ec2.InstanceType(t) for t in config.instance_types],
            use_optimal_instance_classes=False,
            spot=config.spot,
            minv_cpus=0,
            maxv_cpus=config.max_vcpus,
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
            launch_template=self.launch_template,
            update_to_latest_image_version=True,
            replace_compute_environment=False,
        )
        self.job_queue = batch.JobQueue(
            scope,
            "JobQueue",
            compute_environments=[
                batch.OrderedComputeEnvironment(compute_environment=self.compute_environment, order=1)
            ],
        )

        self.job_role = iam.Role(
            scope,
            "WorkerJobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Looking Glass inference worker: tile queue, results table, masks bucket",
        )
        self.log_group = logs.LogGroup(
            scope, "WorkerLogs", retention=config.log_retention, encryption_key=key
        )
        self.container = batch.EcsEc2ContainerDefinition(
            scope,
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
                    tile_queue=tile_queue,
                    tile_dlq=tile_dlq,
                ),
                **worker_environment(config),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="worker", log_group=self.log_group),
        )
        self.job_definition = batch.EcsJobDefinition(
            scope,
            "WorkerJobDefinition",
            container=self.container,
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

        self.imagery_secret: secretsmanager.ISecret | None = None
        self._grant_worker_access(
            config,
            masks_bucket=masks_bucket,
            results_table=results_table,
            tile_queue=tile_queue,
            tile_dlq=tile_dlq,
        )
        self._acknowledge_nag_findings(config, masks_bucket)

    def _grant_worker_access(
        self,
        config: DeploymentConfig,
        *,
        masks_bucket: s3.IBucket,
        results_table: dynamodb.ITable,
        tile_queue: sqs.IQueue,
        tile_dlq: sqs.IQueue,
    ) -> None:
        key = self._key
        grant_table_data(results_table, self.job_role, WORKER_TABLE_ACTIONS)  # dedup reads, transact writes
        self.job_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[masks_bucket.arn_for_objects(f"{MASKS_PREFIX}*")]
            )
        )
        grant_consume(tile_queue, self.job_role, key)
        grant_send(tile_dlq, self.job_role, key)  # malformed work units go straight there
        # Reading the registry's model (no model_s3_uri) decrypts objects of the masks bucket.
        grant_key_use(key, self.job_role, ["dynamodb", "s3-put"] + ([] if config.model_s3_uri else ["s3-read"]))
        if config.model_s3_uri:  # that object (and its sidecar), no wildcard
            self.job_role.add_to_policy(model_read_statement(config.model_s3_uri))
        else:  # the active model: its parameter, then the registered version it names
            self.job_role.add_to_policy(active_model_read_statement(config))
            self.job_role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[masks_bucket.arn_for_objects(f"{REGISTRY_PREFIX}*")],
                )
            )

        imagery_objects = config.imagery_objects()
        if imagery_objects:
            # Read on those objects only (a mosaic document: its folder): GDAL reads them in
            # place with ranged GETs.
            self.job_role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[f"arn:{Aws.PARTITION}:s3:::{obj}" for obj in imagery_objects],
                )
            )
            for obj in imagery_objects:
                if obj.endswith("*"):
                    acknowledge(
                        self.job_role,
                        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{obj}]",
                        "Read (s3:GetObject only) under the folder of a registered mosaic document "
                        "(imagery_sources): the images it names are known only when it is read.",
                    )

        if config.imagery_secret_name:
            # Read on that one secret (by name: its ARN ends in a random suffix, hence -??????).
            self.imagery_secret = secretsmanager.Secret.from_secret_name_v2(
                self._scope, "ImagerySecret", config.imagery_secret_name
            )
            self.imagery_secret.grant_read(self.job_role)
            # A secret encrypted with the deployment's key (create it with --kms-key-id).
            grant_key_use(key, self.job_role, ["secretsmanager-read"])
            acknowledge(
                self.job_role,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:"
                f"<AWS::AccountId>:secret:{config.imagery_secret_name}-??????]",
                "Read on the imagery secret named by imagery_secret_name only; Secrets Manager "
                "appends six random characters to a secret's ARN, so a name-based grant ends in "
                "-??????.",
            )

    def _worker_image(self, config: DeploymentConfig) -> ecs.ContainerImage:
        if config.worker_image:
            ecr_image = parse_ecr_image(config.worker_image)
            if ecr_image is None:
                return ecs.ContainerImage.from_registry(config.worker_image)
            arn, name, tag = ecr_image  # through the repository, so the execution role may pull
            repository = ecr.Repository.from_repository_attributes(
                self._scope, "WorkerImageRepository", repository_arn=arn, repository_name=name
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

    def _acknowledge_nag_findings(self, config: DeploymentConfig, masks_bucket: s3.IBucket) -> None:
        acknowledge(
            self.compute_environment,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]",
            "The ECS instance role policy AWS Batch documents for ECS compute environments (ECS "
            "agent registration, image pulls); it grants no access to project data.",
        )
        masks_arn = cross_stack_output(Stack.of(masks_bucket).stack_name, MASKS_BUCKET_ARN_OUTPUT)
        acknowledge(
            self.job_role,
            f"AwsSolutions-IAM5[Resource::{masks_arn}/{MASKS_PREFIX}*]",
            "The worker writes one result object per work unit under keys it derives from the job and "
            f"unit (looking_glass.pipeline.unit_results.result_key), so s3:PutObject (only) is granted "
            f"under the {MASKS_PREFIX} prefix of the masks bucket.",
        )
        if not config.model_s3_uri:
            acknowledge(
                self.job_role,
                f"AwsSolutions-IAM5[Resource::{masks_arn}/{REGISTRY_PREFIX}*]",
                "The worker loads the active model, a registered version whose key "
                f"({REGISTRY_PREFIX}<model_id>/<version>/model.keras, .json, .onnx) changes with "
                "`looking-glass models use` without a redeploy, so s3:GetObject (only) is granted "
                f"under the {REGISTRY_PREFIX} prefix of the masks bucket.",
            )
        acknowledge(
            self.container,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken (execution role) has no resource-level permissions.",
        )


def model_object_keys(key: str) -> list[str]:
    """The keys the worker's launcher reads for a model at ``key`` (``looking_glass.model.fetch``):
    an archive alone, or a model file, its sidecar and its ONNX export (the key with its last
    suffix replaced by ``.json``, ``.onnx``)."""
    if key.endswith(ARCHIVE_SUFFIXES):
        return [key]
    base = key.rsplit(".", 1)[0]
    return [key, base + ".json", base + ".onnx"]


def active_model_read_statement(config: DeploymentConfig) -> iam.PolicyStatement:
    """``ssm:GetParameter`` on exactly the deployment's active-model parameter (its ARN has no
    second slash: ``parameter/looking-glass/<name>/active-model``)."""
    name = active_model_parameter(config).lstrip("/")
    return iam.PolicyStatement(
        actions=["ssm:GetParameter"],
        resources=[f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter/{name}"],
    )


def model_read_statement(uri: str) -> iam.PolicyStatement:
    """Read access to the model object named by ``uri`` (and its sidecar), nothing else."""
    match = re.match(r"^s3://([^/]+)/(.+)$", uri)
    assert match, uri  # validated by DeploymentConfig
    bucket, key = match.groups()
    return iam.PolicyStatement(
        actions=["s3:GetObject"],
        resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}/{k}" for k in model_object_keys(key)],
    )

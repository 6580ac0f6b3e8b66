"""The network of the inference workers: a two-AZ VPC shaped by the ``worker_subnets`` setting."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from ..config import DeploymentConfig
from ..nag import acknowledge

# Interface endpoints of an isolated network (no internet route): how the workers and the ECS
# agent on the Batch instances reach AWS. About $15/month each, so only where needed.
ISOLATED_INTERFACE_ENDPOINTS = {
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    # The ECS container agent on the Batch instances registers and reports through these;
    # without them an instance with no internet route never joins the cluster and jobs stay
    # RUNNABLE.
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
    "EcsAgent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
    "EcsTelemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
}


def worker_subnet_type(config: DeploymentConfig) -> ec2.SubnetType:
    """The subnet type of the workers for ``config.worker_subnets`` (stacks.config.WORKER_SUBNETS)."""
    return {
        "private": ec2.SubnetType.PRIVATE_WITH_EGRESS,
        "isolated": ec2.SubnetType.PRIVATE_ISOLATED,
        "public": ec2.SubnetType.PUBLIC,
    }[config.worker_subnets]


class WorkerNetwork:
    """The VPC ``Vpc`` of the workers, added to ``scope`` (see ``stacks.constructs``). Two AZs; the
    workers' subnets per ``worker_subnets``:

    - ``private`` (default): no public IPs; the internet (the tile server) through
      ``nat_gateways`` NAT gateways in small public subnets.
    - ``isolated``: no internet route at all; AWS services through VPC endpoints, so the tiles
      must come from S3 (the config refuses any other tile host).
    - ``public``: public IPs and the internet gateway, no NAT; the security group of the compute
      environment allows no inbound traffic.

    S3 and DynamoDB are always reached through (free) gateway endpoints, so results and masks
    never pay NAT data processing. Interface endpoints only where there is no other way to reach
    AWS (isolated); VPC flow logs record rejected traffic.
    """

    def __init__(self, scope: Construct, *, config: DeploymentConfig, key: kms.IKey | None = None) -> None:
        self.subnet_type = subnet_type = worker_subnet_type(config)
        subnets = [ec2.SubnetConfiguration(name="workers", subnet_type=subnet_type, cidr_mask=20)]
        if subnet_type == ec2.SubnetType.PRIVATE_WITH_EGRESS:
            subnets.insert(
                0, ec2.SubnetConfiguration(name="nat", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=26)
            )
        self.vpc = ec2.Vpc(
            scope,
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
        if key is not None:  # the flow log's own log group (made by CDK), encrypted
            flow_log_group = self.vpc.node.find_child("RejectedTraffic").node.find_child("LogGroup")
            assert isinstance(flow_log_group, logs.LogGroup)
            flow_log_group.node.default_child.kms_key_id = key.key_arn
        if subnet_type == ec2.SubnetType.PRIVATE_ISOLATED:  # otherwise an internet route
            self._add_interface_endpoints()

    @property
    def worker_subnets(self) -> ec2.SubnetSelection:
        """The subnets the compute environment places the workers in."""
        return ec2.SubnetSelection(subnet_type=self.subnet_type)

    def _add_interface_endpoints(self) -> None:
        for name, service in ISOLATED_INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                f"{name}Endpoint", service=service, subnets=self.worker_subnets, private_dns_enabled=True
            )
        acknowledge(
            self.vpc,
            "AwsSolutions-EC23",
            "The rule cannot evaluate the interface endpoints' security groups: CDK allows 443 "
            "from the VPC CIDR only (a GetAtt), not from 0.0.0.0/0.",
        )

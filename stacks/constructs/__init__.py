"""The building blocks the stacks are composed of, one module per concern.

Two kinds live here:

- Constructs proper (``SecureBucket``, ``AccessLogBucket``): subclasses of an L2 construct that
  fix how the project configures it; each is one resource with the usual construct path.
- Resource groups (``TileQueues``, ``WorkerNetwork``, ``BatchWorkers``, ``BatchJobEvents``,
  ``DeploymentAlarms``, ``DeploymentDashboard``, ``TileEnumerator``, ``TrainingPipeline``): one
  concern of a stack as a class that takes the ``scope`` to add its resources to, the way a
  construct takes its parent, but without a construct level of its own. CloudFormation knows a
  resource by its logical ID, which CDK derives from the construct path; a ``Construct`` subclass
  here would put every resource one level deeper, change every logical ID of the deployed stacks
  and make CloudFormation replace the VPC, queues, roles and alarms (see the AWS CDK guide,
  "Preserve deployed resources when refactoring CDK code"). Passing the stack as ``scope`` keeps
  the construct paths, so the templates stay the same (tests/infra/test_template_equality.py).

Each group keeps what it made as attributes (``BatchWorkers.job_queue``, ...) for the stack to
wire into the next group and to publish as outputs.
"""

from __future__ import annotations

from .alarms import DeploymentAlarms
from .batch_events import BatchJobEvents
from .batch_workers import BatchWorkers
from .buckets import AccessLogBucket, SecureBucket
from .dashboard import DeploymentDashboard
from .grants import TABLE_DATA_ACTIONS, grant_table_data
from .metrics import PipelineMetrics
from .network import WorkerNetwork
from .queues import TileQueues, terminal_queue

__all__ = [
    "TABLE_DATA_ACTIONS",
    "AccessLogBucket",
    "BatchJobEvents",
    "BatchWorkers",
    "DeploymentAlarms",
    "DeploymentDashboard",
    "PipelineMetrics",
    "SecureBucket",
    "TileQueues",
    "WorkerNetwork",
    "grant_table_data",
    "terminal_queue",
]

"""The building blocks the stacks are composed of, one module per concern.

    encryption     data_key, grant_key_use, grant_send...  (every stack, with encryption=kms)
    buckets        SecureBucket, AccessLogBucket           (StorageStack, TrainingStack)
    grants         grant_table_data                        (item access to the results table)
    queues         terminal_queue, TileQueues              (InferenceStack, IngestStack)
    network        WorkerNetwork                           (InferenceStack)
    batch_workers  BatchWorkers                            (InferenceStack)
    enumerator     TileEnumerator                          (IngestStack)
    training_job   TrainingJobRole, TrainingStateMachine   (TrainingStack)
    batch_events   BatchJobEvents                          (MonitoringStack)
    metrics        PipelineMetrics                         (MonitoringStack)
    alarms         DeploymentAlarms                        (MonitoringStack)
    dashboard      DeploymentDashboard                     (MonitoringStack)

Two kinds of building block live here:

- Constructs proper (``SecureBucket``, ``AccessLogBucket``): subclasses of an L2 construct that
  fix how the project configures it; each is one resource with the usual construct path.
- Resource groups (all the other classes): one concern of a stack as a class that takes the
  ``scope`` to add its resources to, the way a construct takes its parent, but without a
  construct level of its own. CloudFormation knows a resource by its logical ID, which CDK
  derives from the construct path; were these ``Construct`` subclasses, every resource would sit
  one level deeper, every logical ID of the deployed stacks would change and CloudFormation
  would replace the VPC, queues, roles and alarms (see the AWS CDK guide, "Preserve deployed
  resources when refactoring CDK code"). Passing the stack as ``scope`` keeps the construct
  paths, so the templates stay the same (tests/infra/test_template_equality.py). The construct
  ids each group uses are named in its docstring; they must stay unique within the stack.

Each group keeps what it made as attributes (``BatchWorkers.job_queue``, ...) for the stack to
wire into the next group and to publish as outputs.
"""

from __future__ import annotations

from .alarms import DeploymentAlarms
from .batch_events import BatchJobEvents
from .batch_workers import BatchWorkers
from .buckets import AccessLogBucket, SecureBucket
from .dashboard import DeploymentDashboard
from .enumerator import TileEnumerator
from .grants import ENUMERATOR_TABLE_ACTIONS, TABLE_DATA_ACTIONS, WORKER_TABLE_ACTIONS, grant_table_data
from .metrics import PipelineMetrics
from .network import WorkerNetwork
from .queues import TileQueues, terminal_queue
from .training_job import TrainingJobRole, TrainingStateMachine

__all__ = [
    "ENUMERATOR_TABLE_ACTIONS",
    "TABLE_DATA_ACTIONS",
    "WORKER_TABLE_ACTIONS",
    "AccessLogBucket",
    "BatchJobEvents",
    "BatchWorkers",
    "DeploymentAlarms",
    "DeploymentDashboard",
    "PipelineMetrics",
    "SecureBucket",
    "TileEnumerator",
    "TileQueues",
    "TrainingJobRole",
    "TrainingStateMachine",
    "WorkerNetwork",
    "grant_table_data",
    "terminal_queue",
]

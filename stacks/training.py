"""TrainingStack: a bucket for training data and model artifacts, and a Step Functions state
machine that runs one SageMaker training job of the segmentation model and waits for it.

Start an execution with the hyperparameters as input (SageMaker wants string values), e.g.::

    {"hyperparameters": {"epochs": "30", "batch_size": "16", "learning_rate": "0.0005"}}

``hyperparameters`` may be left out (the training script then uses its defaults). The job reads
the channels ``train`` and ``validation`` from ``s3://<bucket>/data/train/`` and
``.../data/validation/`` (mounted at /opt/ml/input/data/<channel>), writes the model archive to
``s3://<bucket>/models/<job name>/output/model.tar.gz`` (from /opt/ml/model) and, with spot
training, syncs /opt/ml/checkpoints to ``s3://<bucket>/checkpoints/<job name>/`` so a job
interrupted by a Spot reclaim resumes where it was. Point ``model_s3_uri`` at such an archive
to deploy the model to the workers.

Buckets: ``stacks.constructs.SecureBucket`` with its own ``AccessLogBucket``.

The role and the state machine: ``stacks.constructs.training_job`` (which also says how
managed spot training is added to CDK's SageMaker task).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from looking_glass.runtime import resources
from looking_glass.training.contract import CHECKPOINTS_PREFIX

from .config import DeploymentConfig
from .constructs import AccessLogBucket, SecureBucket, TrainingJobRole, TrainingStateMachine


class TrainingStack(Stack):
    """The training bucket (with its own access-log bucket), the role of the training job
    (``TrainingJobRole``) and the state machine that runs it (``TrainingStateMachine``); outputs
    the bucket's name and the state machine's ARN."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        key: kms.IKey | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # Its own access-log bucket: logging to StorageStack's would make that stack's bucket
        # policy name this bucket (log delivery is granted per source bucket), a dependency
        # cycle between the two stacks.
        self.access_logs_bucket = AccessLogBucket(self, "AccessLogsBucket")
        self.bucket = SecureBucket(
            self,
            "TrainingBucket",
            access_logs=self.access_logs_bucket,
            log_prefix="training",
            lifecycle_rules=[s3.LifecycleRule(prefix=CHECKPOINTS_PREFIX, expiration=Duration.days(30))],
            encryption_key=key,
        )
        self.training_role = TrainingJobRole(self, bucket=self.bucket, key=key).role
        training = TrainingStateMachine(
            self, config=config, bucket=self.bucket, role=self.training_role, key=key
        )
        self.state_machine = training.state_machine
        self.vpc = training.vpc  # None unless training_vpc

        CfnOutput(self, resources.OUTPUT_TRAINING_BUCKET, value=self.bucket.bucket_name)
        CfnOutput(self, resources.OUTPUT_TRAINING_STATE_MACHINE, value=self.state_machine.state_machine_arn)

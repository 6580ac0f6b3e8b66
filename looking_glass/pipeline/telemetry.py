"""Custom CloudWatch metrics as Embedded Metric Format (EMF) log lines.

aws-lambda-powertools' ``single_metric`` prints one EMF JSON object on stdout; in AWS Batch the
awslogs driver ships it to CloudWatch Logs, which extracts the metric (no PutMetricData call, no
extra permission). It works outside Lambda too; elsewhere (tests, the embedded run) the line is
just a log line.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.metrics import MetricUnit

from looking_glass.runtime.resources import (
    ENV_DEPLOYMENT,
    METRIC_DIMENSION_DEPLOYMENT,
    METRIC_TILES_DONE,
    METRICS_NAMESPACE,
)

# Where no deployment is named (tests, the embedded run): metrics never mix with a real one's.
LOCAL_DEPLOYMENT = "local"


def emit_tiles_done(count: int, *, environ=None) -> None:
    """Print the EMF line counting ``count`` tiles that got their final result (nothing for 0)."""
    if count <= 0:
        return
    env = os.environ if environ is None else environ
    deployment = env.get(ENV_DEPLOYMENT) or LOCAL_DEPLOYMENT
    with single_metric(
        name=METRIC_TILES_DONE, unit=MetricUnit.Count, value=count, namespace=METRICS_NAMESPACE
    ) as metric:
        metric.add_dimension(name=METRIC_DIMENSION_DEPLOYMENT, value=deployment)

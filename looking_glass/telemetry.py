"""Custom CloudWatch metrics as Embedded Metric Format (EMF) log lines.

A process prints one JSON object per observation on stdout; in AWS Batch the awslogs driver ships
it to CloudWatch Logs, which extracts the metric (no PutMetricData call, no extra permission, no
dependency). Elsewhere (tests, the embedded run) the line is just a log line.
Format: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TextIO

from .resources import (
    ENV_DEPLOYMENT,
    METRIC_DIMENSION_DEPLOYMENT,
    METRIC_TILES_DONE,
    METRICS_NAMESPACE,
)

# Where no deployment is named (tests, the embedded run): metrics never mix with a real one's.
LOCAL_DEPLOYMENT = "local"


def emf_record(
    metrics: dict[str, tuple[float, str]],
    dimensions: dict[str, str],
    *,
    namespace: str = METRICS_NAMESPACE,
    timestamp_ms: int | None = None,
) -> dict:
    """One EMF object: ``metrics`` maps a metric name to (value, CloudWatch unit)."""
    if not metrics:
        raise ValueError("an EMF record needs at least one metric")
    record: dict = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()],
                }
            ],
        },
        **dimensions,
    }
    for name, (value, _) in metrics.items():
        record[name] = value
    return record


def emit_tiles_done(count: int, *, stream: TextIO | None = None, environ=None) -> None:
    """Print the EMF line counting ``count`` tiles that got their final result (nothing for 0)."""
    if count <= 0:
        return
    env = os.environ if environ is None else environ
    deployment = env.get(ENV_DEPLOYMENT) or LOCAL_DEPLOYMENT
    line = json.dumps(
        emf_record({METRIC_TILES_DONE: (count, "Count")}, {METRIC_DIMENSION_DEPLOYMENT: deployment}),
        separators=(",", ":"),
    )
    out = sys.stdout if stream is None else stream
    out.write(line + "\n")
    out.flush()

"""The Looking Glass CDK app: one stack per concern, built by ``build_app``.

``app.py`` (what ``cdk synth`` runs) and ``tests/test_cdk_synth.py`` both call ``build_app``, so
the tests check exactly what gets deployed. The stacks are environment-agnostic (no account or
region, no context look-ups): ``cdk synth`` works offline and without credentials.

    StorageStack    trigger bucket, masks bucket, results table
    InferenceStack  tile queue + DLQ, VPC, AWS Batch GPU workers
    IngestStack     tile-enumerator Lambda on AOI uploads
    TrainingStack   training bucket, Step Functions -> SageMaker training job
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from .config import ConfigError, DeploymentConfig
from .inference import InferenceStack
from .ingest import IngestStack
from .storage import StorageStack
from .training import TrainingStack

STACK_PREFIX = "LookingGlass"
CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """The context of cdk.json: the deployment settings and CDK's feature flags.

    The CLI passes it to the app itself; ``app.py`` and ``build_app`` also give it to ``cdk.App``
    as defaults so that the app builds the same without the CLI (``python app.py``, tests).
    Values from the CLI (cdk.json, ``-c key=value``) take precedence over these.
    """
    return json.loads(CDK_JSON.read_text())["context"]


@dataclass(frozen=True)
class LookingGlassApp:
    app: cdk.App
    config: DeploymentConfig
    storage: StorageStack
    inference: InferenceStack
    ingest: IngestStack
    training: TrainingStack

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [self.storage, self.inference, self.ingest, self.training]


def build_app(
    app: cdk.App | None = None,
    *,
    context: Mapping[str, Any] | None = None,
    nag: bool = True,
) -> LookingGlassApp:
    """Build every stack into ``app``; by default a new ``cdk.App`` with the cdk.json context,
    updated with ``context``.

    ``nag=True`` registers the cdk-nag AwsSolutions checks, which run when the app synthesizes.
    """
    if app is None:
        app = cdk.App(context={**cdk_json_context(), **(context or {})})
    config = DeploymentConfig.from_context(app.node.try_get_context)

    storage = StorageStack(
        app, f"{STACK_PREFIX}Storage", description="Looking Glass: AOI trigger bucket, masks bucket, results table"
    )
    inference = InferenceStack(
        app,
        f"{STACK_PREFIX}Inference",
        description="Looking Glass: tile queue, VPC and AWS Batch GPU inference workers",
        config=config,
        trigger_bucket=storage.trigger_bucket,
        masks_bucket=storage.masks_bucket,
        results_table=storage.results_table,
    )
    ingest = IngestStack(
        app,
        f"{STACK_PREFIX}Ingest",
        description="Looking Glass: tile-enumerator Lambda on AOI uploads",
        config=config,
        trigger_bucket=storage.trigger_bucket,
        masks_bucket=storage.masks_bucket,
        results_table=storage.results_table,
        tile_queue=inference.tile_queue,
        tile_dlq=inference.tile_dlq,
        job_queue=inference.job_queue,
        job_definition=inference.job_definition,
    )
    training = TrainingStack(
        app,
        f"{STACK_PREFIX}Training",
        description="Looking Glass: training data bucket and SageMaker training state machine",
        config=config,
    )
    for stack in (storage, inference, ingest, training):
        cdk.Tags.of(stack).add("project", "looking-glass")

    if nag:
        from .nag import add_nag_checks

        add_nag_checks(app)

    return LookingGlassApp(app, config, storage, inference, ingest, training)


__all__ = [
    "ConfigError",
    "DeploymentConfig",
    "LookingGlassApp",
    "STACK_PREFIX",
    "build_app",
    "cdk_json_context",
]

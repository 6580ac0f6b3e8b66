"""The Looking Glass CDK app: one stack per concern, built by ``build_app``.

``app.py`` (what ``cdk synth`` runs) and ``tests/infra/test_cdk_synth.py`` both call ``build_app``,
so the tests check exactly what gets deployed. The stacks are environment-agnostic (no account or
region, no context look-ups): ``cdk synth`` works offline and without credentials.

    <name>Storage     trigger bucket, masks bucket, access-log bucket, results table
    <name>Inference   tile queue + DLQ, VPC, AWS Batch GPU workers
    <name>Ingest      tile-enumerator Lambda on AOI uploads
    <name>Training    training bucket, Step Functions -> SageMaker training job
    <name>Monitoring  CloudWatch dashboard and alarms

Each stack is a short composition of the building blocks in ``stacks.constructs`` (queues,
network, Batch workers, enumerator, training job, Batch events, alarms, dashboard); settings come
from ``stacks.config``, process environments from ``stacks.environment``, cdk-nag from
``stacks.nag``, asset sources from ``stacks.assets``.

<name> is the ``stack_name`` context key (default ``resources.DEFAULT_STACK_NAME``); the output
keys are the ``resources.OUTPUT_*`` constants, which the CLI's ``--stack NAME`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from looking_glass.runtime.resources import DEFAULT_STACK_NAME, STACK_SUFFIXES

from .config import ConfigError, DeploymentConfig, check_context_keys
from .inference import InferenceStack
from .ingest import IngestStack
from .monitoring import MonitoringStack
from .storage import StorageStack
from .training import TrainingStack

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
    """What ``build_app`` built: the app, its settings and the five stacks."""

    app: cdk.App
    config: DeploymentConfig
    storage: StorageStack
    inference: InferenceStack
    ingest: IngestStack
    training: TrainingStack
    monitoring: MonitoringStack

    @property
    def stacks(self) -> list[cdk.Stack]:
        """The stacks in deployment order."""
        return [self.storage, self.inference, self.ingest, self.training, self.monitoring]


def stack_names(deployment: str = DEFAULT_STACK_NAME) -> dict[str, str]:
    """Stack name by suffix (``resources.STACK_SUFFIXES``): what ``--stack NAME`` reads."""
    return {suffix: f"{deployment}{suffix}" for suffix in STACK_SUFFIXES}


def build_app(
    app: cdk.App | None = None,
    *,
    context: Mapping[str, Any] | None = None,
    nag: bool = True,
) -> LookingGlassApp:
    """Build every stack into ``app``; by default a new ``cdk.App`` with the cdk.json context,
    updated with ``context``.

    The stacks are named ``<stack_name><suffix>`` (context ``stack_name``, default
    ``resources.DEFAULT_STACK_NAME``), so one account can hold several deployments.
    ``nag=True`` registers the cdk-nag AwsSolutions checks, which run when the app synthesizes.
    """
    if app is None:
        app = cdk.App(context={**cdk_json_context(), **(context or {})})
    # Every context key of ours must be known (CDK's own are left alone): a typo fails here.
    check_context_keys(app.node.get_all_context())
    config = DeploymentConfig.from_context(app.node.try_get_context)
    names = stack_names(config.stack_name)

    storage = StorageStack(
        app,
        names["Storage"],
        description="Looking Glass: AOI trigger bucket, masks bucket, access logs, results table",
        config=config,
    )
    inference = InferenceStack(
        app,
        names["Inference"],
        description="Looking Glass: tile queue, VPC and AWS Batch GPU inference workers",
        config=config,
        key=storage.data_key,
        trigger_bucket=storage.trigger_bucket,
        masks_bucket=storage.masks_bucket,
        results_table=storage.results_table,
    )
    ingest = IngestStack(
        app,
        names["Ingest"],
        description="Looking Glass: tile-enumerator Lambda on AOI uploads",
        config=config,
        key=storage.data_key,
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
        names["Training"],
        description="Looking Glass: training data bucket and SageMaker training state machine",
        config=config,
        key=storage.data_key,
    )
    monitoring = MonitoringStack(
        app,
        names["Monitoring"],
        description="Looking Glass: CloudWatch dashboard and alarms",
        config=config,
        key=storage.data_key,
        tile_queue=inference.tile_queue,
        tile_dlq=inference.tile_dlq,
        enumerator=ingest.function,
        job_queue=inference.job_queue,
        alarms=[inference.dlq_alarm, ingest.failure_alarm],
    )
    stacks = (storage, inference, ingest, training, monitoring)
    assert [s.stack_name for s in stacks] == list(names.values())
    for stack in stacks:
        cdk.Tags.of(stack).add("project", "looking-glass")
        cdk.Tags.of(stack).add("deployment", config.stack_name)

    from .nag import skip_checkov_on_cdk_handlers

    skip_checkov_on_cdk_handlers(app)
    if nag:
        from .nag import add_nag_checks

        add_nag_checks(app)

    return LookingGlassApp(app, config, storage, inference, ingest, training, monitoring)


__all__ = [
    "ConfigError",
    "DeploymentConfig",
    "LookingGlassApp",
    "build_app",
    "cdk_json_context",
    "stack_names",
]

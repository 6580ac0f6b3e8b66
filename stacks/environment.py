"""The environment variables the stacks hand to the Lambda and to the Batch worker.

Resource variables use the ENV_* names from ``looking_glass.runtime.resources``; runtime settings use the
LG_* names that ``looking_glass.runtime.settings`` reads. Each environment is parsed at synth time by the
very code that reads it at run time (``DeployedResources.from_env``, ``EnumeratorSettings.from_env``,
``WorkerSettings.from_env``), so a missing or invalid variable fails ``cdk synth``, not a job.
Token values (``${Token[...]}``) are non-empty strings and pass those checks as they should.
"""

from __future__ import annotations

import json

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs

from looking_glass.errors import LookingGlassError
from looking_glass.model.registry import ENV_MODEL_PARAMETER, parameter_name
from looking_glass.runtime import resources
from looking_glass.runtime.imagery_sources import (
    DEFAULT_IMAGERY_NAME,
    ENV_DEFAULT_IMAGERY,
    ENV_DEFAULT_IMAGERY_SOURCE,
    ENV_IMAGERY_SOURCES,
    ImageryRegistry,
    ImagerySourcesError,
    check_attribution,
    encode_sources,
    single_source,
)
from looking_glass.runtime.settings import EnumeratorSettings, SettingsError, WorkerSettings

from .config import DeploymentConfig


class StackEnvironmentError(LookingGlassError, ValueError):
    """An environment the stacks would deploy does not parse as the process that reads it would."""


def resource_environment(
    *,
    trigger_bucket: s3.IBucket,
    masks_bucket: s3.IBucket,
    results_table: dynamodb.ITable,
    tile_queue: sqs.IQueue,
    tile_dlq: sqs.IQueue,
) -> dict[str, str]:
    """The ENV_* variables naming the deployed resources (``resources.DeployedResources``)."""
    env = resources.DeployedResources(
        trigger_bucket=trigger_bucket.bucket_name,
        masks_bucket=masks_bucket.bucket_name,
        results_table=results_table.table_name,
        tile_queue_url=tile_queue.queue_url,
        tile_dlq_url=tile_dlq.queue_url,
    ).to_env()
    resources.DeployedResources.from_env(env)  # every variable the processes require is there
    return env


def enumerator_environment(
    config: DeploymentConfig, *, job_queue_arn: str, job_definition_arn: str
) -> dict[str, str]:
    """The enumerator Lambda's settings (``EnumeratorSettings``): Batch launcher, work sizing."""
    env = {
        "LG_WORKER_LAUNCHER": "batch",
        "LG_BATCH_JOB_QUEUE": job_queue_arn,
        "LG_BATCH_JOB_DEFINITION": job_definition_arn,
        "LG_TILES_PER_MESSAGE": str(config.tiles_per_message),
        "LG_MAX_TILES_PER_JOB": str(config.max_tiles_per_job),
        "LG_MAX_WORKERS": str(config.max_workers),
        "LG_TILES_PER_WORKER": str(config.tiles_per_worker),
        **imagery_registry_environment(config),  # jobs naming any other source are refused
        # what the default source is, so a job's identity covers its definition (digest)
        ENV_DEFAULT_IMAGERY_SOURCE: json.dumps(default_source(config).to_json(), separators=(",", ":")),
    }
    _check(EnumeratorSettings.from_env, env)
    return env


# Where the worker image's launcher puts a model fetched from model_s3_uri (batch_jobs/Dockerfile).
ENV_MODEL_S3_URI = "LG_MODEL_S3_URI"


def worker_environment(config: DeploymentConfig) -> dict[str, str]:
    """The Batch worker's settings (``WorkerSettings``): deployment, imagery source, model."""
    # The imagery is deployment configuration only: no AOI, message or job field can set it.
    env = {resources.ENV_DEPLOYMENT: config.stack_name}  # dimension of the worker's metrics
    if config.imagery_geotiff:
        env["LG_IMAGERY_GEOTIFF"] = config.imagery_geotiff
        if config.imagery_bands:
            env["LG_IMAGERY_BANDS"] = ",".join(map(str, config.imagery_bands))
    else:
        env["LG_TILE_URL_TEMPLATE"] = config.tile_url_template
    if config.model_s3_uri:  # a pinned model: the registry's active model is not read
        env[ENV_MODEL_S3_URI] = config.model_s3_uri
    else:  # the active model (looking-glass models use), read at start: no redeploy to change it
        env[ENV_MODEL_PARAMETER] = active_model_parameter(config)
    if config.imagery_secret_name:  # the secret's name; its value is read at run time
        env[resources.ENV_IMAGERY_SECRET] = config.imagery_secret_name
    env.update(imagery_registry_environment(config))
    _check(WorkerSettings.from_env, env)
    return env


def active_model_parameter(config: DeploymentConfig) -> str:
    """The SSM parameter naming the deployment's active model, ``/looking-glass/<stack_name>/active-model``
    (``looking_glass.model.registry.parameter_name``); the job definition names it, not the model."""
    return parameter_name(config.stack_name)


def imagery_registry_environment(config: DeploymentConfig) -> dict[str, str]:
    """``LG_IMAGERY_SOURCES`` (the named sources, JSON) and ``LG_DEFAULT_IMAGERY``: the same for
    the workers (which open them) and the enumerator (which refuses other names). Nothing for
    a deployment of one source under the default name (the processes' own default)."""
    env = {}
    if config.default_imagery != DEFAULT_IMAGERY_NAME:
        env[ENV_DEFAULT_IMAGERY] = config.default_imagery
    if config.imagery_sources:
        env[ENV_IMAGERY_SOURCES] = encode_sources(config.imagery_sources)
    return env


def default_source(config: DeploymentConfig):
    """The single source (``tile_url_template`` / ``imagery_geotiff`` with ``imagery_bands`` and
    ``imagery_attribution``) as the registry entry named ``default_imagery``; a bad attribution
    is a StackEnvironmentError naming the key."""
    try:
        attribution = check_attribution(config.default_imagery, config.imagery_attribution or None)
    except ImagerySourcesError as exc:
        raise StackEnvironmentError(f"imagery_attribution: {exc}") from None
    return single_source(config.default_imagery, config.tile_url_template, config.imagery_geotiff, config.imagery_bands,
                         attribution=attribution)


def imagery_registry(config: DeploymentConfig) -> ImageryRegistry:
    """Every source jobs may name, the default's definition among them: the ``ImagerySources``
    output the CLI reads (``submit --stack``: names checked, job ids computed as the enumerator
    computes them)."""
    return ImageryRegistry({**config.imagery_sources, config.default_imagery: default_source(config)},
                           config.default_imagery)


def _check(parse, env: dict[str, str]) -> None:
    try:
        parse(env)
    except SettingsError as exc:
        raise StackEnvironmentError(f"{parse.__qualname__}: {exc}") from None

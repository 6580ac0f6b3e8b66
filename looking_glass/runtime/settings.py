"""Runtime settings of the enumerator and the worker, read from the environment and validated.

Both the CDK stacks (Lambda environment, Batch job definition) and the embedded run set these
variables; a bad value stops the process at start-up with a message naming the variable.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from looking_glass.runtime.defaults import (
    DEFAULT_MAX_TILES_PER_JOB,
    DEFAULT_MAX_WORKERS,
    DEFAULT_TILES_PER_MESSAGE,
    DEFAULT_TILES_PER_WORKER,
    MAX_TILES_PER_MESSAGE,
    workers_for,
)
from looking_glass.runtime.imagery_sources import (  # noqa: F401 - part of this module's interface
    DEFAULT_IMAGERY_NAME,
    ENV_DEFAULT_IMAGERY,
    ENV_DEFAULT_IMAGERY_SOURCE,
    ENV_IMAGERY_SOURCES,
    GEOTIFF_SUFFIXES,
    MOSAIC_DOCUMENT_SUFFIXES,
    TEMPLATE_FIELD,
    TEMPLATE_FIELDS,
    ImageryRegistry,
    ImagerySource,
    ImagerySourcesError,
    SettingsError,
    parse_source_entry,
    parse_sources,
    validate_geotiff_source,
    validate_tile_url_template,
)
from looking_glass.runtime.parsing import Variables
from looking_glass.runtime.resources import ENV_IMAGERY_SECRET, TILE_QUEUE_VISIBILITY_TIMEOUT_S

# Secrets Manager: a name (letters, digits, /_+=.@-) or a secret's ARN.
SECRET_ID = re.compile(r"^([A-Za-z0-9/_+=.@-]{1,512}|arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512})$")
HTTP_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# Where the token goes when the template has no {token}: this header, as "Bearer <token>".
DEFAULT_TOKEN_HEADER = "Authorization"
# The hosts an http:// template may send the imagery token to: this machine (the local tile
# server of the tests and the embedded run). To any other host the token goes over HTTPS only.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def token_transport_ok(url: str) -> bool:
    """Whether the imagery token may be sent to ``url`` (a template or a URL): over HTTPS, or
    over plain HTTP to this machine only (``LOOPBACK_HOSTS``)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    try:
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme == "http" and host in LOOPBACK_HOSTS


def max_tiles_per_job(environ=None) -> int:
    """``LG_MAX_TILES_PER_JOB`` of ``environ`` (default ``os.environ``): the enumerator's tile cap,
    1..10**10, default :data:`DEFAULT_MAX_TILES_PER_JOB`; SettingsError naming the variable for
    any other value. The commands that check an AOI before upload read it here too."""
    var = Variables(os.environ if environ is None else environ, SettingsError)
    return var.integer("LG_MAX_TILES_PER_JOB", DEFAULT_MAX_TILES_PER_JOB, 1, 10**10)


@dataclass(frozen=True)
class EnumeratorSettings:
    """The enumerator Lambda's settings (``LG_TILES_PER_MESSAGE``, ``LG_MAX_TILES_PER_JOB``, ...)."""

    tiles_per_message: int
    max_tiles_per_job: int
    launcher: str  # "batch" in the cloud, "local" in the embedded run
    max_workers: int
    tiles_per_worker: int
    batch_job_queue: str
    batch_job_definition: str
    enqueue_threads: int = 16
    # The imagery sources jobs may name (LG_IMAGERY_SOURCES, plus the default LG_DEFAULT_IMAGERY,
    # whose definition LG_DEFAULT_IMAGERY_SOURCE gives where set): names, definitions, digests.
    imagery: ImageryRegistry = ImageryRegistry()

    @property
    def imagery_names(self) -> frozenset[str]:
        """Every imagery source name a job may give."""
        return self.imagery.names

    @property
    def default_imagery(self) -> str:
        """The name of the source of jobs that name none."""
        return self.imagery.default

    @classmethod
    def from_env(cls, environ=None) -> EnumeratorSettings:
        """Read and check the variables of ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        var = Variables(env, SettingsError)
        launcher = var.choice("LG_WORKER_LAUNCHER", "batch", ("batch", "local"))
        settings = cls(
            tiles_per_message=var.integer(
                "LG_TILES_PER_MESSAGE", DEFAULT_TILES_PER_MESSAGE, 1, MAX_TILES_PER_MESSAGE
            ),
            max_tiles_per_job=max_tiles_per_job(env),
            launcher=launcher,
            max_workers=var.integer("LG_MAX_WORKERS", DEFAULT_MAX_WORKERS, 1, 10_000),
            tiles_per_worker=var.integer("LG_TILES_PER_WORKER", DEFAULT_TILES_PER_WORKER, 1, 10**9),
            batch_job_queue=env.get("LG_BATCH_JOB_QUEUE", ""),
            batch_job_definition=env.get("LG_BATCH_JOB_DEFINITION", ""),
            enqueue_threads=var.integer("LG_ENQUEUE_THREADS", 16, 1, 128),
            **_enumerator_imagery(env),
        )
        if launcher == "batch" and not (settings.batch_job_queue and settings.batch_job_definition):
            raise SettingsError("LG_BATCH_JOB_QUEUE and LG_BATCH_JOB_DEFINITION are required")
        return settings

    def workers_for(self, tiles: int) -> int:
        """Worker count sized to the work: one per ``tiles_per_worker`` tiles, capped."""
        return workers_for(tiles, self.tiles_per_worker, self.max_workers)


# The model's runtime (looking_glass.model.inference): ONNX Runtime when the checked export is
# usable (auto), forced (onnx), or Keras/TensorFlow (keras).
MODEL_RUNTIMES = ("auto", "onnx", "keras")
ONNX_PROVIDERS = ("tensorrt", "cuda", "cpu")


@dataclass(frozen=True)
class ModelRuntimeSettings:
    """``LG_RUNTIME`` (auto|onnx|keras), ``LG_INFERENCE_THREADS`` (ONNX Runtime intra-op
    threads; 0: the CPUs less one), ``LG_ONNX_PROVIDERS`` (e.g. ``cuda,cpu``; unset: all) and
    ``LG_ONNX_TILES_PER_RUN`` (tiles per ONNX Runtime run; 0: the provider's default)."""

    runtime: str = "auto"
    threads: int = 0
    providers: tuple[str, ...] | None = None
    tiles_per_run: int = 0

    @classmethod
    def from_env(cls, environ=None) -> ModelRuntimeSettings:
        """Read and check the variables of ``environ`` (default ``os.environ``)."""
        var = Variables(os.environ if environ is None else environ, SettingsError)
        raw = var.raw("LG_ONNX_PROVIDERS")
        providers = None if raw is None else tuple(
            var.parse.choice("LG_ONNX_PROVIDERS", p.lower(), ONNX_PROVIDERS) for p in var.parse.text_list("LG_ONNX_PROVIDERS", raw)
        )
        return cls(
            runtime=var.choice("LG_RUNTIME", "auto", MODEL_RUNTIMES),
            threads=var.integer("LG_INFERENCE_THREADS", 0, 0, 1024),
            providers=providers,
            tiles_per_run=var.integer("LG_ONNX_TILES_PER_RUN", 0, 0, 4096),
        )


@dataclass(frozen=True)
class WorkerSettings:
    """The worker's settings: imagery source, model, batching, downloads, queue timing."""

    tile_url_template: str
    model_path: str  # "" means: the model shipped in the repo, or an untrained one
    batch_size: int
    threshold: float
    download_concurrency: int
    download_timeout_s: float
    download_retries: int
    write_masks: bool
    idle_exit_s: float  # exit after the queue has stayed empty this long
    poll_wait_s: int
    visibility_timeout_s: int = TILE_QUEUE_VISIBILITY_TIMEOUT_S  # what the heartbeat renews
    # Imagery sources (README "Imagery sources"): either tile_url_template, or a GeoTIFF/COG.
    imagery_geotiff: str = ""  # local path or s3://bucket/key.tif; then tile_url_template is ""
    imagery_bands: tuple[int, ...] | None = None  # GeoTIFF bands as R,G,B (or 1 grey band)
    imagery_secret: str = ""  # Secrets Manager secret (name or ARN) holding the API token
    imagery_token_header: str = ""  # the token's HTTP header when the template has no {token}
    # Named sources a work unit may choose (LG_IMAGERY_SOURCES) and the one units without a name
    # use (LG_DEFAULT_IMAGERY; the template/GeoTIFF above, when set, is registered under it).
    imagery_sources: dict[str, ImagerySource] = field(default_factory=dict)
    default_imagery: str = DEFAULT_IMAGERY_NAME
    # A unit left for redelivery (imagery temporarily failing) is visible again after this.
    retry_delay_s: int = 30
    # Accelerator options (README "Worker speed"): off by default, slower on CPUs.
    xla: bool = False
    mixed_precision: bool = False
    # LG_RUNTIME, LG_INFERENCE_THREADS, LG_ONNX_PROVIDERS, LG_ONNX_TILES_PER_RUN (docs/inference.md).
    model_runtime: ModelRuntimeSettings = ModelRuntimeSettings()

    @classmethod
    def from_env(cls, environ=None) -> WorkerSettings:
        """Read and check the variables of ``environ`` (default ``os.environ``), imagery cross-checked."""
        env = os.environ if environ is None else environ
        template = env.get("LG_TILE_URL_TEMPLATE", "")
        geotiff = env.get("LG_IMAGERY_GEOTIFF", "")
        sources = parse_sources(env.get(ENV_IMAGERY_SOURCES))
        if not template and not geotiff and not sources:
            raise SettingsError(
                "LG_TILE_URL_TEMPLATE is required (or LG_IMAGERY_GEOTIFF for a GeoTIFF source, or "
                f"{ENV_IMAGERY_SOURCES} for named sources)"
            )
        if template and geotiff:
            raise SettingsError("set LG_TILE_URL_TEMPLATE or LG_IMAGERY_GEOTIFF, not both")
        if template or geotiff:
            imagery = _imagery_settings(env, template, geotiff)
            _check_registry_tokens(sources, imagery["imagery_secret"])
        else:
            imagery = _registry_token_settings(env, sources)
        imagery.update(imagery_sources=sources, default_imagery=_default_imagery(env, sources, bool(template or geotiff)))
        var = Variables(env, SettingsError)
        return cls(
            **imagery,
            model_path=env.get("LG_MODEL_PATH", ""),
            batch_size=var.integer("LG_BATCH_SIZE", 32, 1, 1024),
            threshold=var.number("LG_THRESHOLD", 0.5, 0.0, 1.0),
            download_concurrency=var.integer("LG_DOWNLOAD_CONCURRENCY", 16, 1, 256),
            download_timeout_s=var.number("LG_DOWNLOAD_TIMEOUT_S", 10.0, 0.1, 300.0),
            download_retries=var.integer("LG_DOWNLOAD_RETRIES", 3, 0, 10),
            write_masks=var.boolean("LG_WRITE_MASKS", True),
            idle_exit_s=var.number("LG_IDLE_EXIT_S", 60.0, 0.0, 3600.0),
            poll_wait_s=var.integer("LG_POLL_WAIT_S", 20, 0, 20),
            visibility_timeout_s=var.integer(
                "LG_VISIBILITY_TIMEOUT_S", TILE_QUEUE_VISIBILITY_TIMEOUT_S, 2, 43200
            ),
            retry_delay_s=var.integer("LG_RETRY_DELAY_S", 30, 0, 43200),
            xla=var.boolean("LG_XLA", False),
            mixed_precision=var.boolean("LG_MIXED_PRECISION", False),
            model_runtime=ModelRuntimeSettings.from_env(env),
        )


def _enumerator_imagery(env) -> dict:
    """The enumerator's view of the registry: the named sources, the default's name and, where
    LG_DEFAULT_IMAGERY_SOURCE gives it, the default's definition (without it a job on the
    default source is identified by its name only)."""
    sources = parse_sources(env.get(ENV_IMAGERY_SOURCES))
    default = env.get(ENV_DEFAULT_IMAGERY, "") or DEFAULT_IMAGERY_NAME
    raw = env.get(ENV_DEFAULT_IMAGERY_SOURCE, "")
    if raw:
        if default in sources:
            raise SettingsError(f"{ENV_DEFAULT_IMAGERY_SOURCE} is set and {ENV_IMAGERY_SOURCES} registers {default!r} too")
        try:
            value = json.loads(raw) if raw.lstrip().startswith(("{", '"')) else raw
        except ValueError as exc:
            raise SettingsError(f"{ENV_DEFAULT_IMAGERY_SOURCE}: not JSON ({exc})") from None
        try:
            sources = {**sources, default: parse_source_entry(default, value)}
        except ImagerySourcesError as exc:
            raise SettingsError(f"{ENV_DEFAULT_IMAGERY_SOURCE}: {exc}") from None
    return {"imagery": ImageryRegistry(sources, default)}


def _default_imagery(env, sources: dict[str, ImagerySource], has_single: bool) -> str:
    """The name of the source units without one use: LG_DEFAULT_IMAGERY, checked."""
    default = env.get(ENV_DEFAULT_IMAGERY, "")
    if has_single:
        # LG_TILE_URL_TEMPLATE / LG_IMAGERY_GEOTIFF is the default source, under this name.
        name = default or DEFAULT_IMAGERY_NAME
        if name in sources:
            raise SettingsError(
                f"{ENV_IMAGERY_SOURCES} registers {name!r} and LG_TILE_URL_TEMPLATE/LG_IMAGERY_GEOTIFF "
                f"is set too: name the default one way only ({ENV_DEFAULT_IMAGERY})"
            )
        return name
    if not default:
        raise SettingsError(
            f"{ENV_DEFAULT_IMAGERY} is required when every source is registered in {ENV_IMAGERY_SOURCES} "
            f"(one of {', '.join(sorted(sources))})"
        )
    if default not in sources:
        raise SettingsError(f"{ENV_DEFAULT_IMAGERY}={default!r} is not registered (registered: {', '.join(sorted(sources))})")
    return default


def _registry_token_settings(env, sources: dict[str, ImagerySource]) -> dict:
    """Imagery fields when every source is registered: the token goes into registered templates
    with {token} only (over HTTPS); bands belong to each source."""
    secret = env.get(ENV_IMAGERY_SECRET, "")
    Variables(env, SettingsError).matching(ENV_IMAGERY_SECRET, SECRET_ID, "a Secrets Manager secret name or ARN")
    for name in ("LG_IMAGERY_BANDS", "LG_IMAGERY_TOKEN_HEADER"):
        if env.get(name):
            raise SettingsError(f"{name} applies to LG_TILE_URL_TEMPLATE/LG_IMAGERY_GEOTIFF only (registered sources carry their own)")
    _check_registry_tokens(sources, secret)
    return dict(tile_url_template="", imagery_geotiff="", imagery_bands=None, imagery_secret=secret, imagery_token_header="")


def _check_registry_tokens(sources: dict[str, ImagerySource], secret: str) -> None:
    """A registered template with {token} needs the secret and HTTPS."""
    for src in sources.values():
        if src.is_template and "token" in TEMPLATE_FIELD.findall(src.source):
            if not secret:
                raise SettingsError(f"imagery source {src.name!r} has {{token}} but {ENV_IMAGERY_SECRET} is not set")
            if not token_transport_ok(src.source):
                raise SettingsError(f"imagery source {src.name!r} is not https://: the imagery token is only sent over HTTPS")


def _imagery_settings(env, template: str, geotiff: str) -> dict:
    """The imagery fields of WorkerSettings, cross-checked (one source; a token only for URLs)."""
    secret = env.get(ENV_IMAGERY_SECRET, "")
    header = env.get("LG_IMAGERY_TOKEN_HEADER", "")
    var = Variables(env, SettingsError)
    bands = var.bands("LG_IMAGERY_BANDS")
    var.matching(ENV_IMAGERY_SECRET, SECRET_ID, "a Secrets Manager secret name or ARN")
    var.matching("LG_IMAGERY_TOKEN_HEADER", HTTP_HEADER_NAME, "an HTTP header name")
    if geotiff:
        validate_geotiff_source(geotiff)
        if secret or header:
            raise SettingsError(
                f"{ENV_IMAGERY_SECRET}/LG_IMAGERY_TOKEN_HEADER apply to LG_TILE_URL_TEMPLATE only "
                "(a GeoTIFF on S3 is read with the worker's own AWS credentials)"
            )
    else:
        validate_tile_url_template(template)
        if bands is not None:
            raise SettingsError("LG_IMAGERY_BANDS applies to LG_IMAGERY_GEOTIFF only")
        has_placeholder = "token" in TEMPLATE_FIELD.findall(template)
        if has_placeholder and not secret:
            raise SettingsError(f"the tile URL template has {{token}} but {ENV_IMAGERY_SECRET} is not set")
        if header and not secret:
            raise SettingsError(f"LG_IMAGERY_TOKEN_HEADER is set but {ENV_IMAGERY_SECRET} is not")
        if header and has_placeholder:
            raise SettingsError(
                "the tile URL template has {token} and LG_IMAGERY_TOKEN_HEADER is set: send the "
                "token one way only"
            )
        if secret and not has_placeholder and not header:
            header = DEFAULT_TOKEN_HEADER  # "Authorization: Bearer <token>"
        if secret and not token_transport_ok(template):
            raise SettingsError(
                f"{ENV_IMAGERY_SECRET} is set but LG_TILE_URL_TEMPLATE is not https://: the "
                "imagery token is only sent over HTTPS"
            )
    return dict(
        tile_url_template=template,
        imagery_geotiff=geotiff,
        imagery_bands=bands,
        imagery_secret=secret,
        imagery_token_header=header,
    )

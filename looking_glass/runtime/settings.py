"""Runtime settings of the enumerator and the worker, read from the environment and validated.

Both the CDK stacks (Lambda environment, Batch job definition) and the embedded run set these
variables; a bad value stops the process at start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from looking_glass.runtime.defaults import (
    DEFAULT_MAX_TILES_PER_JOB,
    DEFAULT_MAX_WORKERS,
    DEFAULT_TILES_PER_MESSAGE,
    DEFAULT_TILES_PER_WORKER,
    MAX_TILES_PER_MESSAGE,
    workers_for,
)
from looking_glass.runtime.parsing import ParseError, Variables
from looking_glass.runtime.resources import ENV_IMAGERY_SECRET, TILE_QUEUE_VISIBILITY_TIMEOUT_S


class SettingsError(ParseError):
    """A runtime setting (an environment variable) is missing or invalid; the message names it."""


# Placeholders of a tile URL template: {x}, {y} (XYZ) or {-y} (TMS, rows counted from the
# south), {z}, and {token} (the API token read from LG_IMAGERY_SECRET; see looking_glass.imagery.xyz).
TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")
TEMPLATE_FIELDS = ("x", "y", "-y", "z", "token")
GEOTIFF_SUFFIXES = (".tif", ".tiff")
# A mosaic document: a GDAL VRT, MosaicJSON or a STAC item collection (looking_glass.imagery.mosaic).
MOSAIC_DOCUMENT_SUFFIXES = (".vrt", ".json", ".geojson")
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


def validate_tile_url_template(template: str) -> str:
    """``template`` if it is an http(s) XYZ/TMS URL with {z}, {x} and {y} (or {-y}) and no unknown
    placeholder; else :class:`SettingsError` saying what is wrong."""
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"tile URL template {template!r} is not an http(s) URL")
    fields = TEMPLATE_FIELD.findall(template)
    for name in fields:
        if name not in TEMPLATE_FIELDS:
            raise SettingsError(
                f"tile URL template {template!r} has an unknown placeholder {{{name}}} "
                f"(known: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})"
            )
    for field in ("z", "x"):
        if field not in fields:
            raise SettingsError(f"tile URL template {template!r} lacks {{{field}}}")
    if "y" not in fields and "-y" not in fields:
        raise SettingsError(f"tile URL template {template!r} lacks {{y}} (or {{-y}} for TMS)")
    if "y" in fields and "-y" in fields:
        raise SettingsError(f"tile URL template {template!r} has both {{y}} and {{-y}}")
    return template


def validate_geotiff_source(source: str) -> str:
    """A GeoTIFF/COG or a mosaic for LG_IMAGERY_GEOTIFF: a local path or s3://bucket/key ending
    .tif/.tiff, several of them separated by commas, or one mosaic document (.vrt, MosaicJSON or
    a STAC item collection: .json/.geojson). (Whether they exist and read as GeoTIFFs is checked
    when the worker opens them: looking_glass.imagery.mosaic.)"""
    parts = [p.strip() for p in source.split(",")]
    if len(parts) == 1 and parts[0].lower().endswith(MOSAIC_DOCUMENT_SUFFIXES):
        suffixes = MOSAIC_DOCUMENT_SUFFIXES
    else:
        suffixes = GEOTIFF_SUFFIXES
    for part in parts:
        if not part:
            raise SettingsError(f"LG_IMAGERY_GEOTIFF={source!r} has an empty entry in its list")
        if "://" in part:
            if not part.startswith("s3://"):
                raise SettingsError(f"LG_IMAGERY_GEOTIFF={part!r}: only local paths and s3:// URIs are supported")
            bucket, _, key = part[5:].partition("/")
            if not bucket or not key:
                raise SettingsError(f"LG_IMAGERY_GEOTIFF={part!r} is not an s3://bucket/key address")
        if not part.lower().endswith(suffixes):
            raise SettingsError(
                f"LG_IMAGERY_GEOTIFF={part!r} does not end in .tif or .tiff (a list of GeoTIFFs), "
                "or .vrt/.json/.geojson (one mosaic document)"
            )
    return source


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
            max_tiles_per_job=var.integer("LG_MAX_TILES_PER_JOB", DEFAULT_MAX_TILES_PER_JOB, 1, 10**10),
            launcher=launcher,
            max_workers=var.integer("LG_MAX_WORKERS", DEFAULT_MAX_WORKERS, 1, 10_000),
            tiles_per_worker=var.integer("LG_TILES_PER_WORKER", DEFAULT_TILES_PER_WORKER, 1, 10**9),
            batch_job_queue=env.get("LG_BATCH_JOB_QUEUE", ""),
            batch_job_definition=env.get("LG_BATCH_JOB_DEFINITION", ""),
            enqueue_threads=var.integer("LG_ENQUEUE_THREADS", 16, 1, 128),
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
    threads; 0: the CPUs less one) and ``LG_ONNX_PROVIDERS`` (e.g. ``cuda,cpu``; unset: all)."""

    runtime: str = "auto"
    threads: int = 0
    providers: tuple[str, ...] | None = None

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
    # A unit left for redelivery (imagery temporarily failing) is visible again after this.
    retry_delay_s: int = 30
    # Accelerator options (README "Worker speed"): off by default, slower on CPUs.
    xla: bool = False
    mixed_precision: bool = False
    # LG_RUNTIME, LG_INFERENCE_THREADS, LG_ONNX_PROVIDERS (docs/inference.md).
    model_runtime: ModelRuntimeSettings = ModelRuntimeSettings()

    @classmethod
    def from_env(cls, environ=None) -> WorkerSettings:
        """Read and check the variables of ``environ`` (default ``os.environ``), imagery cross-checked."""
        env = os.environ if environ is None else environ
        template = env.get("LG_TILE_URL_TEMPLATE", "")
        geotiff = env.get("LG_IMAGERY_GEOTIFF", "")
        if not template and not geotiff:
            raise SettingsError("LG_TILE_URL_TEMPLATE is required (or LG_IMAGERY_GEOTIFF for a GeoTIFF source)")
        if template and geotiff:
            raise SettingsError("set LG_TILE_URL_TEMPLATE or LG_IMAGERY_GEOTIFF, not both")
        imagery = _imagery_settings(env, template, geotiff)
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
                "LG_VISIBILITY_TIMEOUT_S", TILE_QUEUE_VISIBILITY_TIMEOUT_S, 30, 43200
            ),
            retry_delay_s=var.integer("LG_RETRY_DELAY_S", 30, 0, 43200),
            xla=var.boolean("LG_XLA", False),
            mixed_precision=var.boolean("LG_MIXED_PRECISION", False),
            model_runtime=ModelRuntimeSettings.from_env(env),
        )


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

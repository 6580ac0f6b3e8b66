"""The embedded run: the whole pipeline on one machine with no AWS account.

moto's server plays AWS on 127.0.0.1 (ephemeral port), resources come from ``resources``, the
synthetic world is served over HTTP, and S3 notifications reach the real Lambda handler through
an SQS queue that a poller here drains (moto cannot invoke Lambda functions without Docker).
The handler's local launcher starts the real Batch worker entry point as processes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3

from looking_glass.local.tileserver import SyntheticTileServer
from looking_glass.model.registry import parameter_name
from looking_glass.pipeline.enumerator import upload_aoi
from looking_glass.pipeline.launchers import LocalProcessLauncher, register_local_launcher
from looking_glass.runtime.imagery_sources import (
    DEFAULT_IMAGERY_NAME,
    ENV_DEFAULT_IMAGERY_SOURCE,
    ENV_IMAGERY_SOURCES,
    ImageryRegistry,
    encode_sources,
    single_source,
)
from looking_glass.runtime.resources import DeployedResources, ResourceNames, create_embedded_resources

log = logging.getLogger(__name__)

# moto accepts any credentials; these keep boto3 from looking for real ones.
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "looking-glass-local",
    "AWS_SECRET_ACCESS_KEY": "looking-glass-local",
    "AWS_SESSION_TOKEN": "looking-glass-local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass
class LocalLambdaContext:
    """What Powertools reads from a Lambda context."""

    function_name: str = "looking-glass-tile-enumerator-local"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id: str = ""


def load_enumerator_handler():
    """The Lambda's own handler function (``lambdas/tile_enumerator/handler.py`` re-exports it)."""
    from looking_glass.pipeline.enumerator_lambda import handler

    return handler


# What maps credit for the synthetic world (the embedded run's default imagery without --imagery).
SYNTHETIC_ATTRIBUTION = "Looking Glass synthetic world (simulated imagery)"


def s3_objects(spec: str, session) -> list[str]:
    """The ``s3://`` objects GeoTIFF/mosaic ``spec`` reads: its GeoTIFFs, or a mosaic document and
    every image it names (read with the boto3 ``session``; MosaicError if it cannot be)."""
    from looking_glass.imagery.mosaic import is_mosaic_spec, mosaic_members

    uris = [p.strip() for p in spec.split(",")]
    if is_mosaic_spec(spec) and "s3://" in spec:
        uris += [m.source for m in mosaic_members(spec, session)]
    return [u for u in dict.fromkeys(uris) if u.startswith("s3://")]


class EmbeddedStack:
    """The pipeline's AWS resources in an in-process moto server, the enumerator Lambda fed by a
    poller, and the workers as local processes; ``with EmbeddedStack(...) as stack`` starts and
    stops it (this process's AWS environment variables point at it meanwhile)."""

    def __init__(
        self,
        work_dir: Path,
        workers: int = 1,
        tile_url_template: str | None = None,
        tile_latency_s: float = 0.0,
        worker_env: dict[str, str] | None = None,
        imagery=None,
        imagery_sources: dict | None = None,
        imagery_attribution: str | None = None,
    ):
        """``imagery`` (a :class:`looking_glass.local.inputs.Imagery`, validated) replaces the
        synthetic world: the workers read that source (an XYZ template, or the GeoTIFF itself,
        as deployed workers do), and for a GeoTIFF a local tile server serves it too (the map's
        background, ``tile_url_template``). ``s3://`` imagery (a GeoTIFF, or a mosaic: a list, or
        a document and every image it names) is copied once, with the AWS credentials of the
        moment the stack is created, into the embedded S3 under the same bucket and key
        (:meth:`_stage_s3`), where the workers read it in place through GDAL's /vsis3/ as deployed
        workers read the original. ``imagery_sources`` (name -> checked :class:`~looking_glass.runtime.imagery_sources.ImagerySource`)
        are the named sources jobs may choose (``submit --imagery NAME``), given to the workers and
        the enumerator as ``LG_IMAGERY_SOURCES``. ``imagery_attribution``: what maps credit for the
        default source (None: the synthetic world's credit, or the source's name). ``worker_env`` is
        added last to the workers' environment."""
        self.work_dir = Path(work_dir)
        self.workers = workers
        self.imagery = imagery
        if imagery is not None and imagery.kind == "xyz":
            tile_url_template = imagery.source
        self.external_tiles = tile_url_template
        self.tile_latency_s = tile_latency_s
        self.worker_env = worker_env or {}
        self.imagery_sources = dict(imagery_sources or {})
        self.imagery_attribution = imagery_attribution
        specs = [s.source for s in self.imagery_sources.values() if not s.is_template]
        if imagery is not None and imagery.kind == "geotiff":
            specs.append(imagery.source)
        # The user's S3 objects the imagery reads, found and the client made now: start() points
        # this process's AWS environment (endpoint, credentials) at moto.
        self._user_s3, self._s3_objects = None, []
        if any("s3://" in spec for spec in specs):
            user = boto3.session.Session()
            self._user_s3 = user.client("s3")
            self._s3_objects = list(dict.fromkeys(uri for spec in specs for uri in s3_objects(spec, user)))
        self.names = ResourceNames.for_prefix("looking-glass")
        self._saved_env: dict[str, str | None] = {}
        self._stop = threading.Event()
        self.handler_errors: list[str] = []

    # ---- start / stop --------------------------------------------------------------------
    def start(self) -> "EmbeddedStack":
        """Start moto on an ephemeral 127.0.0.1 port, create the resources, serve the imagery, set
        this process's environment for the enumerator and start the event poller; returns the stack."""
        from moto.server import ThreadedMotoServer

        from looking_glass.local.moto_dynamodb import serialize_dynamodb

        serialize_dynamodb()  # DynamoDB's per-item atomic writes, which tile packs rely on
        self._log_emulator_errors_to_file()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self._set_env({**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint_url})
        self.session = boto3.session.Session()
        self.resources: DeployedResources = create_embedded_resources(self.session, self.names)
        self._stage_s3()

        self.tiles = None
        self.geotiff = None
        imagery_env: dict[str, str] = {}
        if self.imagery is not None and self.imagery.kind == "geotiff":
            imagery_env = self._serve_geotiff()
        elif self.imagery is not None:
            imagery_env = self.imagery.worker_env()
        elif self.external_tiles is None:
            self.tiles = SyntheticTileServer(latency_s=self.tile_latency_s).start()
        self.tile_url_template = self.external_tiles or self.tiles.url_template
        registry_env = self._registry(imagery_env)

        worker_env = {
            **LOCAL_AWS_ENV,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            **self.resources.to_env(),
            "LG_TILE_URL_TEMPLATE": self.tile_url_template,
            "LG_IDLE_EXIT_S": "3",
            "LG_POLL_WAIT_S": "1",
            # The active model of `looking-glass models use` (none: the shipped model).
            "LG_MODEL_PARAMETER": parameter_name(self.resources.masks_bucket),
            **imagery_env,
            **registry_env,
            **self.worker_env,
        }
        self.launcher = LocalProcessLauncher(worker_env, self.work_dir / "logs", self.workers)
        self.launcher.on_failure = self._worker_failed
        register_local_launcher(self.launcher)
        self._set_env(
            {
                **self.resources.to_env(),
                "LG_WORKER_LAUNCHER": "local",
                "LG_MAX_WORKERS": str(self.workers),
                "LG_TILES_PER_WORKER": os.environ.get("LG_TILES_PER_WORKER", "100"),
                "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
                **registry_env,  # the enumerator refuses jobs naming anything else
                # ... and a job's identity covers what the default source is (its digest)
                ENV_DEFAULT_IMAGERY_SOURCE: json.dumps(self.imagery_registry.sources[DEFAULT_IMAGERY_NAME].to_json()),
            }
        )
        self.events_url = self.session.client("sqs").get_queue_url(QueueName=self.names.aoi_events_queue)[
            "QueueUrl"
        ]
        self._poller = threading.Thread(target=self._lambda_poller, daemon=True)
        self._poller.start()
        return self

    def stop(self) -> None:
        """Stop the poller, the workers, the tile servers and moto; restore the environment."""
        self._stop.set()
        if hasattr(self, "_poller"):
            self._poller.join(timeout=10)
        if hasattr(self, "launcher"):
            self.launcher.stop()
            register_local_launcher(None)
        if getattr(self, "tiles", None):
            self.tiles.stop()
        if getattr(self, "geotiff", None):
            self.geotiff.close()
        if hasattr(self, "moto"):
            self.moto.stop()
        if getattr(self, "_moto_log", None):
            logger = logging.getLogger("werkzeug")
            logger.removeHandler(self._moto_log)
            logger.propagate = self._werkzeug_propagate
            self._moto_log.close()
            self._moto_log = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _log_emulator_errors_to_file(self) -> None:
        """moto's HTTP server (werkzeug) logs a traceback for each request it fails internally
        (e.g. a concurrent DynamoDB transaction; the client retries it): into
        ``work_dir/logs/moto.log``, not over the demo's output."""
        logger = logging.getLogger("werkzeug")
        logger.setLevel(logging.ERROR)
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._moto_log = logging.FileHandler(self.work_dir / "logs" / "moto.log", delay=True)
        logger.addHandler(self._moto_log)
        self._werkzeug_propagate, logger.propagate = logger.propagate, False

    def _registry(self, imagery_env: dict[str, str]) -> dict[str, str]:
        """Set :attr:`imagery_registry` (the named sources and the default the workers read, as
        ``imagery_env`` sets it); returns the registry's worker and enumerator variables."""
        geotiff = imagery_env.get("LG_IMAGERY_GEOTIFF", "")
        bands = self.imagery.bands if geotiff and self.imagery is not None else None
        # The map's credit: the synthetic world says what it is (its tile server's URL would not)
        credit = SYNTHETIC_ATTRIBUTION if self.tiles is not None and not geotiff else None
        credit = self.imagery_attribution or credit  # `up --attribution default=TEXT` first
        default = single_source(DEFAULT_IMAGERY_NAME, "" if geotiff else self.tile_url_template, geotiff, bands,
                                attribution=credit)
        self.imagery_registry = ImageryRegistry({**self.imagery_sources, DEFAULT_IMAGERY_NAME: default})
        return {ENV_IMAGERY_SOURCES: encode_sources(self.imagery_sources)} if self.imagery_sources else {}

    def _stage_s3(self) -> None:
        """Copy the user's ``s3://`` imagery objects (:func:`s3_objects` of every source) into the
        embedded S3 under the same bucket and key: each source then reads the same inside the run
        (whose workers see only the embedded S3), with no path rewritten in a list or a document.
        Copies stream, but the embedded S3 keeps them in memory while the run lasts."""
        target = self.session.client("s3")
        for uri in self._s3_objects:
            bucket, _, key = uri[len("s3://"):].partition("/")
            try:
                target.create_bucket(Bucket=bucket)
            except target.exceptions.BucketAlreadyOwnedByYou:  # two objects in one bucket
                pass
            target.upload_fileobj(self._user_s3.get_object(Bucket=bucket, Key=key)["Body"], bucket, key)

    def _serve_geotiff(self) -> dict[str, str]:
        """Start the tile server of the GeoTIFF source (staged into the embedded S3 at start when
        it is on S3); the workers' imagery settings."""
        from looking_glass.imagery.mosaic import open_geotiff_source

        source = self.imagery.source
        session = self.session if "s3://" in source else None
        self.geotiff = open_geotiff_source(source, bands=self.imagery.bands, session=session)
        image = self.geotiff
        self.tiles = SyntheticTileServer(
            latency_s=self.tile_latency_s, tile_source=lambda z, x, y: image.png(x, y, z)
        ).start()
        return self.imagery.worker_env()

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _worker_failed(self, job_id: str, reason: str, in_a_row: int) -> None:
        """A local worker exited with an error: the job it was started for (for a worker started
        for the queue, every running job) shows the reason (``worker_error``, ``worker_failures``);
        after MAX_FAILURES_IN_A_ROW in a row those jobs are FAILED with it, so ``status`` shows
        it, ``submit --wait`` stops and ``jobs`` marks them."""
        from looking_glass.pipeline.launchers import MAX_FAILURES_IN_A_ROW
        from looking_glass.pipeline.store import ENQUEUEING, FAILED, RUNNING, ResultsStore, utc_now

        store = ResultsStore(self.session.client("dynamodb"), self.resources.results_table)
        if job_id == "queue":
            jobs = [j["job_id"] for j in store.list_jobs(limit=100) if j.get("status") == RUNNING]
        else:
            jobs = [job_id]
        log.warning("worker failed (%d in a row): %s", in_a_row, reason)
        for job in jobs:
            values = {"worker_error": reason[:1000], "worker_failures": in_a_row}
            if in_a_row >= MAX_FAILURES_IN_A_ROW:
                values.update(
                    status=FAILED, finished_at=utc_now(),
                    reason=f"workers failed {in_a_row} times in a row: {reason}"[:1000],
                )
            store.update_job(job, values, only_if_status=(RUNNING, ENQUEUEING))

    def active_model(self) -> str:
        """The active model's URI (``models use``), "" when none is (the workers' own model)."""
        from looking_glass.model.fetch import active_uri

        return active_uri(self.session.client("ssm"), parameter_name(self.resources.masks_bucket)) or ""

    def new_chance(self, since: str, model: str) -> str | None:
        """Why workers may now start fine although the last ones failed in a row since ``since``
        (UTC, ``store.utc_now``) with ``model`` active (:meth:`active_model`): a job retried
        after that moment (its ``retried_at``, to the second: one in the same second counts), or another active
        model; None when neither."""
        from looking_glass.pipeline.store import ResultsStore

        now = self.active_model()
        if now != model:
            return f"the active model is now {now or 'the shipped one'}"
        store = ResultsStore(self.session.client("dynamodb"), self.resources.results_table)
        retried = [j["job_id"] for j in store.list_jobs(limit=100) if str(j.get("retried_at") or "") >= since]
        return f"job {retried[0]} was retried" if retried else None

    # ---- the local Lambda runtime --------------------------------------------------------
    def _lambda_poller(self) -> None:
        """Deliver S3 notifications to the real handler, as the Lambda service would."""
        handler = load_enumerator_handler()
        sqs = self.session.client("sqs")
        while not self._stop.is_set():
            resp = sqs.receive_message(QueueUrl=self.events_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in resp.get("Messages", []):
                try:
                    event = json.loads(message["Body"])
                except ValueError:
                    event = {}  # not an S3 event: dropped below, as Lambda's event source would
                if isinstance(event, dict) and "Records" in event:
                    try:
                        handler(event, LocalLambdaContext(aws_request_id=str(uuid.uuid4())))
                    except Exception as exc:  # noqa: BLE001 - Lambda would retry; so do we
                        # ... a few times: the events queue's redrive policy then moves it to
                        # its dead-letter queue (runtime.resources.AOI_EVENTS_MAX_RECEIVE_COUNT).
                        log.exception("tile enumerator failed; the event will be redelivered (a few times at most)")
                        self.handler_errors.append(repr(exc))
                        continue
                sqs.delete_message(QueueUrl=self.events_url, ReceiptHandle=message["ReceiptHandle"])

    # ---- conveniences for the CLI and tests ----------------------------------------------
    def upload_aoi(self, filename: str, data: bytes, imagery: str | None = None) -> str:
        """Upload an AOI (naming the registered source ``imagery``; None: the default) to the
        trigger bucket; returns the id of the job it starts."""
        return upload_aoi(self.session.client("s3"), self.resources.trigger_bucket, filename, data,
                          self.imagery_registry.digest(imagery))

"""The inference worker's process: what AWS Batch runs in the worker image, and what the
embedded run's local launcher starts.

    python -m looking_glass.pipeline.worker_main

Thin over :mod:`looking_glass.pipeline.worker`: read settings, load the model, drain the queue,
exit. Exit codes: 0 queue drained or stopped by SIGTERM; 2 bad settings (an unreadable imagery
secret or GeoTIFF included); 3 model cannot be loaded.
"""

from __future__ import annotations

import logging
import sys

import boto3

from looking_glass.runtime.resources import DeployedResources
from looking_glass.runtime.settings import SettingsError, WorkerSettings


def main() -> int:
    """Run one worker until the queue is drained or SIGTERM arrives; returns the exit code
    (0 drained or stopped; 2 bad settings, imagery secret or GeoTIFF; 3 model cannot be loaded)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    log = logging.getLogger("worker")
    try:
        settings = WorkerSettings.from_env()
        resources = DeployedResources.from_env()
    except (SettingsError, RuntimeError) as exc:
        log.error("bad worker settings: %s", exc)
        return 2
    session = boto3.session.Session()
    from looking_glass.imagery.catalog import ImageryCatalog
    from looking_glass.imagery.xyz import ImagerySourceError

    try:
        # Before the model (slow to load): the token secret and the default source are checked
        # first (other registered sources are opened when a unit first names them).
        fetcher = ImageryCatalog(settings, session).get(None)
    except ImagerySourceError as exc:  # the message never holds the token
        log.error("bad imagery source: %s", exc)
        return 2
    log.info("imagery: %s", fetcher.public_name)
    from looking_glass.model.model_file import ModelFileError, check_model_file
    from looking_glass.model.registry import model_source, resolve_worker_model

    model_path = settings.model_path
    try:
        from looking_glass.model.segmenter import Segmenter

        rt = settings.model_runtime
        # LG_MODEL_PATH, else the active model of LG_MODEL_PARAMETER (models use), else the shipped one.
        model_path = settings.model_path or resolve_worker_model(ssm=session.client("ssm"), s3=session.client("s3"))
        if model_path:  # a corrupt file is named as the user knows it (a registered version: its id and URI)
            check_model_file(model_path, label=model_source(model_path))
        segmenter = Segmenter.load(model_path, runtime=rt.runtime, threads=rt.threads, providers=rt.providers,
                                   tiles_per_run=rt.tiles_per_run)
        if settings.xla or settings.mixed_precision:
            segmenter = segmenter.accelerated(xla=settings.xla, mixed_precision=settings.mixed_precision)
    except ModelFileError as exc:  # its message starts with the model's name
        log.error("cannot load model %s", exc)
        return 3
    except Exception as exc:  # noqa: BLE001 - any load failure is fatal and must say why
        log.error("cannot load model %s: %s", model_source(model_path) if model_path else "(shipped or active)", exc)
        return 3
    from looking_glass.pipeline.worker import Worker

    log.info("model %s v%s (%s)", segmenter.info.model_id, segmenter.info.version, segmenter.info.description)
    log.info("model runtime: %s", segmenter.describe())
    worker = Worker(session, resources, settings, segmenter, fetcher=fetcher)
    worker.install_signal_handlers()
    stats = worker.run()
    log.info(
        "done: %d messages, %d new tile results, %d malformed, %d left for redelivery",
        stats.messages, stats.tiles_new, stats.malformed, stats.transient,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The inference worker: drains the tile queue, runs the model, stores one result per tile.

Three stages overlap: a prefetch thread receives work units and downloads and decodes their
tiles (a bounded thread pool); the main thread runs the model; a store thread uploads masks,
writes results and deletes messages. So the model never waits on the network when the network
can keep up.
A message is deleted only after every tile of it has a stored result; tiles that already have one
(a redelivery) are skipped, and stored results move the job's counters once per tile.
"""

from __future__ import annotations

import io
import logging
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from botocore.config import Config
from PIL import Image

from looking_glass.grid import quadkey
from looking_glass.imagery.catalog import ImageryCatalog
from looking_glass.imagery.status import TILE_DONE
from looking_glass.imagery.tiles import FetchedTile, TransientTileError
from looking_glass.imagery.xyz import ImagerySourceError, open_imagery, public_imagery_name  # noqa: F401
from looking_glass.model.segmenter import Segmenter, building_area_m2
from looking_glass.outlines.vectorize import building_count
from looking_glass.pipeline.heartbeat import VisibilityHeartbeat
from looking_glass.pipeline.store import ResultsStore, TileResult, UnknownJob, area_decimal, fraction_decimal, utc_now
from looking_glass.pipeline.telemetry import emit_tiles_done
from looking_glass.pipeline.workunits import MalformedMessage, WorkUnit, parse_work_unit
from looking_glass.runtime.resources import DeployedResources
from looking_glass.runtime.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """What one worker did: messages, new and already-stored tiles, malformed and transient units."""

    messages: int = 0
    tiles_new: int = 0
    tiles_seen: int = 0
    malformed: int = 0
    transient: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class Prefetched:
    """A received message with its unit and fetched tiles (prefetch stage)."""

    message: dict
    unit: WorkUnit
    tiles: list[FetchedTile]
    transient: str | None  # some tiles could not be fetched now: leave the message for redelivery
    # The source the tiles came from, as stored: {"imagery": public name (never a token),
    # "imagery_name": its registered name}.
    imagery: dict = field(default_factory=dict)


@dataclass
class Inferred:
    """A prefetched unit with its tile results and pending mask uploads (inference stage)."""

    item: Prefetched
    results: list[TileResult]
    uploads: list  # futures of the mask uploads, which must finish before the results are stored


def mask_key(job_id: str, x: int, y: int, z: int) -> str:
    """The masks bucket key of a tile's mask PNG."""
    return f"masks/{job_id}/{z}/{x}/{y}.png"


class Worker:
    """Takes work units off the tile queue: fetch, infer, store, in three overlapping stages."""

    def __init__(
        self,
        session,
        resources: DeployedResources,
        settings: WorkerSettings,
        segmenter: Segmenter,
        fetcher=None,
    ):
        # Connection pools as wide as the download pool, which also uploads masks.
        pool_config = Config(max_pool_connections=settings.download_concurrency + 4)
        self.sqs = session.client("sqs")
        self.s3 = session.client("s3", config=pool_config)
        self.store = ResultsStore(session.client("dynamodb"), resources.results_table)
        self.resources = resources
        self.settings = settings
        self.segmenter = segmenter
        # The imagery sources by name (imagery.catalog), each opened once. The default one (URL
        # template, with its token, or a GeoTIFF): main.py opens it before loading the model so
        # that a bad source fails fast; else it is opened here.
        self.catalog = ImageryCatalog(settings, session, default_source=fetcher)
        self.fetcher = self.catalog.get(None)
        self.pool = ThreadPoolExecutor(settings.download_concurrency, thread_name_prefix="fetch")
        self.stop_event = threading.Event()
        self.heartbeat = VisibilityHeartbeat(
            self.sqs, resources.tile_queue_url, settings.visibility_timeout_s
        )
        self.stats = WorkerStats()
        self.provenance = {
            "model_id": segmenter.info.model_id,
            "model_version": segmenter.info.version,
            # what ran the model: "onnx/CUDAExecutionProvider", "keras/CPU" (docs/inference.md)
            "model_runtime": f"{getattr(segmenter, 'runtime', 'keras')}/{getattr(segmenter, 'provider', '?')}",
            "imagery": self.fetcher.public_name,  # never a token (imagery.public_imagery_name)
            "threshold": area_decimal(segmenter.info.threshold),
        }

    # ---- lifecycle -----------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGTERM (spot reclaim, Batch termination): stop taking work, finish what is in hand."""

        def on_term(signum, _frame):
            log.warning("signal %d: finishing in-flight work, taking no more", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    def run(self) -> WorkerStats:
        """Work until the queue stays empty for ``idle_exit_s`` or SIGTERM/SIGINT; the stats."""
        self.heartbeat.start()
        handoff: queue.Queue[Prefetched | None] = queue.Queue(maxsize=2)
        to_store: queue.Queue[Inferred | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        prefetcher = threading.Thread(target=self._prefetch_loop, args=(handoff,), daemon=True)
        storer = threading.Thread(target=self._store_loop, args=(to_store,), daemon=True)
        prefetcher.start()
        storer.start()
        try:
            while (item := handoff.get()) is not None:
                if self._error is not None:
                    # A stage failed: nothing more is stored; what is in hand goes back to the
                    # queue at once, for another worker.
                    self.heartbeat.release(item.message["ReceiptHandle"], visible_in_s=0)
                    continue
                to_store.put(self._infer(item))
        finally:
            to_store.put(None)
            storer.join()
            # After a normal end the prefetcher has already finished; after an error it may be
            # blocked handing over a unit: stop it and let go of what it holds.
            self.stop_event.set()
            while prefetcher.is_alive():
                try:
                    leftover = handoff.get(timeout=0.1)
                except queue.Empty:
                    continue
                if leftover is not None:
                    self.heartbeat.release(leftover.message["ReceiptHandle"], visible_in_s=0)
            # Whatever is still held was neither stored nor handed over (e.g. the unit being
            # downloaded when a stage failed): back to the queue at once, for another worker.
            handed_back = self.heartbeat.release_all(visible_in_s=0)
            if handed_back:
                log.warning("handed %d unfinished work unit(s) back to the queue", handed_back)
            self.heartbeat.stop()
            self.pool.shutdown()
        if self._error is not None:
            raise self._error
        return self.stats

    def _fail(self, exc: BaseException) -> None:
        """A stage thread failed: remember the first error for run() and stop taking work."""
        if self._error is None:
            self._error = exc
        self.stop_event.set()

    # ---- stage 1: receive and download ---------------------------------------------------
    def _prefetch_loop(self, handoff: queue.Queue) -> None:
        idle_since = time.monotonic()
        try:
            while not self.stop_event.is_set():
                resp = self.sqs.receive_message(
                    QueueUrl=self.resources.tile_queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=self.settings.poll_wait_s,
                    AttributeNames=["ApproximateReceiveCount"],
                )
                messages = resp.get("Messages", [])
                if not messages:
                    if time.monotonic() - idle_since >= self.settings.idle_exit_s:
                        log.info("queue empty for %.0f s: exiting", self.settings.idle_exit_s)
                        break
                    continue
                idle_since = time.monotonic()
                for message in messages:
                    self.heartbeat.hold(message["ReceiptHandle"])
                    prefetched = self._prefetch(message)
                    if prefetched is not None:
                        handoff.put(prefetched)
        except BaseException as exc:  # noqa: BLE001 - re-raised by run() on the main thread
            log.exception("receiving or downloading failed; stopping")
            self._fail(exc)
        finally:
            handoff.put(None)

    def _prefetch(self, message: dict) -> Prefetched | None:
        try:
            unit = parse_work_unit(message["Body"])
        except MalformedMessage as exc:
            self._dead_letter(message, str(exc))
            return None
        try:  # only registered names: never a fetch of anything else
            source = self.catalog.get(unit.imagery)
        except ImagerySourceError as exc:
            self._dead_letter(message, str(exc))
            return None
        tiles = unit.tiles()
        keys = {quadkey(x, y, z): (x, y, z) for x, y, z in tiles}
        already = self.store.final_quadkeys(unit.job_id, list(keys))
        todo = [t for qk, t in keys.items() if qk not in already]
        self.stats.tiles_seen += len(tiles)
        fetched: list[FetchedTile] = []
        transient = None
        for outcome in self.pool.map(lambda tile: self._fetch_safe(tile, source), todo):
            if isinstance(outcome, TransientTileError):
                transient = str(outcome)
            else:
                fetched.append(outcome)
        imagery = {"imagery": source.public_name, "imagery_name": unit.imagery or self.catalog.default_name}
        return Prefetched(message, unit, fetched, transient, imagery)

    def _fetch_safe(self, tile, source):
        """One tile from the source: a FetchedTile, or a TransientTileError (the unit is kept for
        redelivery). Never raises: one bad tile never stops the worker (decode errors are already
        the tile's ``failed`` status; anything else unexpected is treated as transient, so the
        unit is retried and, if it keeps failing, dead-lettered)."""
        try:
            return source.fetch(*tile)
        except TransientTileError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - logged; the unit goes round again
            log.exception("tile %d/%d/%d: unexpected error from the imagery source", tile[2], tile[0], tile[1])
            return TransientTileError(f"tile {tile[2]}/{tile[0]}/{tile[1]}: {type(exc).__name__}: {exc}"[:500])

    def _dead_letter(self, message: dict, reason: str) -> None:
        """A message no retry can fix goes straight to the DLQ with its reason, not round again."""
        log.error("work unit %s to the dead-letter queue: %s", message.get("MessageId"), reason)
        self.stats.malformed += 1
        self.sqs.send_message(
            QueueUrl=self.resources.tile_dlq_url,
            MessageBody=message["Body"],
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )
        self.sqs.delete_message(
            QueueUrl=self.resources.tile_queue_url, ReceiptHandle=message["ReceiptHandle"]
        )
        self.heartbeat.release(message["ReceiptHandle"])

    # ---- stage 2: infer ------------------------------------------------------------------
    def _infer(self, item: Prefetched) -> Inferred:
        unit = item.unit
        results: list[TileResult] = []
        uploads = []
        with_image = [t for t in item.tiles if t.image is not None]
        for t in item.tiles:
            if t.image is None:
                results.append(TileResult(t.x, t.y, t.z, quadkey(t.x, t.y, t.z), t.status, reason=t.reason,
                                          capture_date=t.capture_date))
        bs = self.settings.batch_size
        for i in range(0, len(with_image), bs):
            batch = with_image[i : i + bs]
            masks = self.segmenter.predict_masks(np.stack([t.image for t in batch]))
            results.extend(self._tile_results(unit.job_id, batch, masks, uploads))
        return Inferred(item, results, uploads)

    # ---- stage 3: store ------------------------------------------------------------------
    def _store_loop(self, to_store: queue.Queue) -> None:
        while (inferred := to_store.get()) is not None:
            if self._error is not None:
                self.heartbeat.release(inferred.item.message["ReceiptHandle"], visible_in_s=0)
                continue
            try:
                self._store(inferred)
            except UnknownJob as exc:  # no retry can fix it: to the DLQ with the reason
                self._dead_letter(inferred.item.message, str(exc))
            except BaseException as exc:  # noqa: BLE001 - re-raised by run() on the main thread
                log.exception("storing results failed; stopping (unstored work will be redelivered)")
                self._fail(exc)
                self.heartbeat.release(inferred.item.message["ReceiptHandle"], visible_in_s=0)

    def _store(self, inferred: Inferred) -> None:
        item, unit = inferred.item, inferred.item.unit
        for upload in inferred.uploads:  # masks are stored before the results that point at them
            upload.result()
        provenance = {**self.provenance, **item.imagery, "zoom": unit.zoom, "processed_at": utc_now()}
        stored = self.store.record_tiles(unit.job_id, inferred.results, provenance)
        self.stats.tiles_new += stored
        emit_tiles_done(stored)  # the dashboard's tiles-per-minute metric (EMF on stdout)
        if item.transient:
            # Back on the queue after a short delay (not the whole visibility timeout); after
            # maxReceiveCount deliveries it goes to the dead-letter queue.
            self.stats.transient += 1
            log.warning("work unit kept for redelivery in %d s: %s", self.settings.retry_delay_s, item.transient)
            self.heartbeat.release(item.message["ReceiptHandle"], visible_in_s=self.settings.retry_delay_s)
        else:
            self.sqs.delete_message(
                QueueUrl=self.resources.tile_queue_url, ReceiptHandle=item.message["ReceiptHandle"]
            )
            self.heartbeat.release(item.message["ReceiptHandle"])
        self.stats.messages += 1
        if self.store.try_complete(unit.job_id):
            log.info("job %s complete", unit.job_id)

    def _tile_results(self, job_id: str, batch: list[FetchedTile], masks: np.ndarray, uploads: list) -> list[TileResult]:
        out = []
        for t, mask in zip(batch, masks):
            key = None
            if self.settings.write_masks:
                key = mask_key(job_id, t.x, t.y, t.z)
                uploads.append(self.pool.submit(self._put_mask, key, mask))
            out.append(
                TileResult(
                    t.x,
                    t.y,
                    t.z,
                    quadkey(t.x, t.y, t.z),
                    TILE_DONE,
                    building_area_m2=area_decimal(building_area_m2(mask, t.x, t.y, t.z)),
                    building_pixels=int(mask.sum()),
                    mask_key=key,
                    valid_fraction=fraction_decimal(t.valid_fraction),
                    capture_date=t.capture_date,
                    building_count=building_count(mask, t.z, t.x, t.y),  # the export's instance rule
                )
            )
        return out

    def _put_mask(self, key: str, mask: np.ndarray) -> None:
        buf = io.BytesIO()
        Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG", optimize=False)
        self.s3.put_object(
            Bucket=self.resources.masks_bucket, Key=key, Body=buf.getvalue(), ContentType="image/png"
        )

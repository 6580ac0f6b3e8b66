"""The inference worker: drains the tile queue, runs the model, stores one result object per unit.

Five stages overlap, each with more than one unit in hand: a receiving thread takes work units
off the queue and hands each to a unit thread (``UNITS_IN_FLIGHT`` at once) that checks which of
its tiles are already stored and queues the others' downloads (and decoding) in a shared pool, so
one slow tile holds up only its own unit; the main thread runs the model, and nothing else, on
the units in the order received, each batch as soon as its tiles are in; a results thread computes
each unit's areas and building counts and hands its rasters to the pool to be encoded and
uploaded as one object (``unit_results``); the store thread writes the tile items, counts them
once (``ledger``) and deletes the message. So the model never waits on the network when the
network can keep up, and decoding, counting and encoding never run on its thread.
A message is deleted only after every tile of it has a stored result; tiles that already have one
(a redelivery) are skipped, and stored results move the job's counters once per tile.
After SIGTERM the units already past the model are finished; the others are handed back at once.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from botocore.config import Config

from looking_glass.grid import quadkey
from looking_glass.imagery.catalog import ImageryCatalog
from looking_glass.imagery.status import TILE_DONE
from looking_glass.imagery.tiles import FetchedTile, TransientTileError
from looking_glass.imagery.xyz import ImagerySourceError, open_imagery, public_imagery_name  # noqa: F401
from looking_glass.model.segmenter import Segmenter, building_area_m2
from looking_glass.outlines.vectorize import stored_building_count as tile_count
from looking_glass.pipeline.heartbeat import VisibilityHeartbeat
from looking_glass.pipeline.store import ResultsStore, TileResult, UnknownJob, area_decimal, fraction_decimal, utc_now
from looking_glass.pipeline.telemetry import emit_tiles_done
from looking_glass.pipeline.unit_results import SDT_SCALE, encode_unit_result, result_key
from looking_glass.pipeline.workunits import MalformedMessage, WorkUnit, parse_work_unit
from looking_glass.runtime.resources import DeployedResources
from looking_glass.runtime.settings import WorkerSettings

log = logging.getLogger(__name__)

UNITS_IN_FLIGHT = 3  # units whose downloads are queued ahead of the model's
# Units being stored at once: one, so units are counted in the order the model took them (a
# crash leaves the newest unstored); the next units' objects are encoded and uploaded meanwhile.
STORE_THREADS = 1
# Units the model has done that may wait for the results and store threads: enough that a slow
# store (one unit's writes took 0.1-0.8 s on the embedded endpoint) seldom stops the model.
UNITS_TO_STORE = 3
RESULT_CONTENT_TYPE = "application/x-npz"
# How much lower the CPU priority of the receiving, unit and download threads (decoding is most
# of the worker's CPU after the model's) is than the model's: on a machine where they share cores,
# the model's thread gets its core first and they take what is left (docs/benchmarks.md#worker).
# The results and store threads keep theirs: they use little CPU, and the model waits on them.
HELPER_NICE = 10


def lower_thread_priority(nice: int = HELPER_NICE) -> None:
    """Make the calling thread ``nice`` steps less favoured by the scheduler (Linux, where each
    thread has its own nice value; capped at 19). Where that is not possible (another OS, a
    sandbox refusing it) the thread keeps its priority: only its share of the CPU changes."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, AttributeError):
        pass


def start_all_threads(pool: ThreadPoolExecutor, n: int) -> None:
    """Start ``n`` threads of ``pool`` now (it starts them one per submit, as needed): then a
    unit's downloads are queued in one go, in the order the units arrived, instead of
    interleaving with the next unit's while each submit waits for a new thread."""
    barrier = threading.Barrier(n)
    for future in [pool.submit(barrier.wait, 10) for _ in range(n)]:
        future.exception()  # a broken barrier only means fewer threads were started early


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
    # The downloads of the tiles still to do, in the unit's order (each a FetchedTile or a
    # TransientTileError): the unit is handed to the model when they are queued, and the model
    # runs each batch as soon as its tiles are in (``take_downloads`` fills ``tiles`` and
    # ``transient`` from them).
    downloads: list[Future] = field(default_factory=list)

    def take_downloads(self):
        """Yield each downloaded tile in order, waiting for it; ``tiles`` and ``transient`` are
        complete once the generator is exhausted."""
        for future in self.downloads:
            outcome = future.result()
            if isinstance(outcome, TransientTileError):
                self.transient = str(outcome)
            else:
                self.tiles.append(outcome)
                yield outcome
        self.downloads = []


@dataclass
class Inferred:
    """A prefetched unit after the model: its tile results and its result object's upload."""

    item: Prefetched
    # (tile results, the result object's upload or None), computed on the results thread; the
    # upload must finish before the results that point at the object are stored.
    results: Future


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
        self.pool = ThreadPoolExecutor(settings.download_concurrency, thread_name_prefix="fetch",
                                       initializer=lower_thread_priority)
        self.units = ThreadPoolExecutor(UNITS_IN_FLIGHT, thread_name_prefix="unit", initializer=lower_thread_priority)
        # Areas and building counts of the units the model has done, one unit at a time, beside
        # the model (on its thread they left it idle between units).
        self.post = ThreadPoolExecutor(1, thread_name_prefix="results")
        self.stop_event = threading.Event()
        self.heartbeat = VisibilityHeartbeat(
            self.sqs, resources.tile_queue_url, settings.visibility_timeout_s
        )
        self.stats = WorkerStats()
        self.stats_lock = threading.Lock()  # the store threads count into the same stats
        self.provenance = {
            "model_id": segmenter.info.model_id,
            "model_version": segmenter.info.version,
            # what ran the model: "onnx/CUDAExecutionProvider", "keras/CPU" (docs/inference.md)
            "model_runtime": f"{getattr(segmenter, 'runtime', 'keras')}/{getattr(segmenter, 'provider', '?')}",
            "imagery": self.fetcher.public_name,  # never a token (imagery.public_imagery_name)
            "threshold": area_decimal(segmenter.info.threshold),
        }

    def _count(self, **increments: int) -> None:
        """Add to the stats (several threads count into them)."""
        with self.stats_lock:
            for name, n in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

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
        start_all_threads(self.pool, self.settings.download_concurrency)
        # Futures of units being downloaded, in the order received (the model takes them in that
        # order); the receiving thread blocks when UNITS_IN_FLIGHT are waiting.
        handoff: queue.Queue[Future | None] = queue.Queue(maxsize=UNITS_IN_FLIGHT - 1)
        to_store: queue.Queue[Inferred | None] = queue.Queue(maxsize=UNITS_TO_STORE)
        self._error: BaseException | None = None
        prefetcher = threading.Thread(target=self._prefetch_loop, args=(handoff,), daemon=True)
        storers = [threading.Thread(target=self._store_loop, args=(to_store,), daemon=True) for _ in range(STORE_THREADS)]
        prefetcher.start()
        for storer in storers:
            storer.start()
        try:
            while (future := handoff.get()) is not None:
                item = self._prefetched(future)
                if item is None:
                    continue
                if self._error is not None or self.stop_event.is_set():
                    # A stage failed, or SIGTERM: a unit that has not reached the model goes back
                    # to the queue at once, for another worker.
                    self.heartbeat.release(item.message["ReceiptHandle"], visible_in_s=0)
                    continue
                to_store.put(self._infer(item))
        finally:
            for _ in storers:
                to_store.put(None)
            for storer in storers:
                storer.join()
            self.post.shutdown(wait=True, cancel_futures=True)
            # After a normal end the prefetcher has already finished; after an error it may be
            # blocked handing over a unit: stop it and let go of what it holds.
            self.stop_event.set()
            while prefetcher.is_alive():
                try:
                    handoff.get(timeout=0.1)
                except queue.Empty:
                    continue
            # Whatever is still held was neither stored nor handed over (e.g. the unit being
            # downloaded when a stage failed): back to the queue at once, for another worker.
            self.units.shutdown(wait=True, cancel_futures=True)
            handed_back = self.heartbeat.release_all(visible_in_s=0)
            if handed_back:
                log.warning("handed %d unfinished work unit(s) back to the queue", handed_back)
            self.heartbeat.stop()
            self.pool.shutdown()
        if self._error is not None:
            raise self._error
        return self.stats

    def _prefetched(self, future: Future) -> Prefetched | None:
        """The downloaded unit of ``future``; None when it was dead-lettered or its download
        failed (the worker then stops; the unit is handed back with the others it holds)."""
        try:
            return future.result()
        except BaseException as exc:  # noqa: BLE001 - re-raised by run()
            if self._error is None:
                log.exception("receiving or downloading failed; stopping")
            self._fail(exc)
            return None

    def _fail(self, exc: BaseException) -> None:
        """A stage failed: remember the first error for run() and stop taking work."""
        if self._error is None:
            self._error = exc
        self.stop_event.set()

    # ---- stage 1: receive and download ---------------------------------------------------
    def _prefetch_loop(self, handoff: queue.Queue) -> None:
        lower_thread_priority()
        idle_since = time.monotonic()
        turn = threading.Event()  # set: the previous unit's downloads are queued
        turn.set()
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
                    # Downloads of several units run at once (one slow tile holds up one unit's
                    # download only); the model takes the units in the order received.
                    next_turn = threading.Event()
                    handoff.put(self.units.submit(self._prefetch_in_turn, message, turn, next_turn))
                    turn = next_turn
        except BaseException as exc:  # noqa: BLE001 - re-raised by run() on the main thread
            log.exception("receiving failed; stopping")
            self._fail(exc)
        finally:
            handoff.put(None)

    def _prefetch_in_turn(self, message: dict, turn: threading.Event, next_turn: threading.Event) -> Prefetched | None:
        """:meth:`_prefetch`, queuing the unit's downloads only once the unit received before it
        has queued its own (``turn``; this unit then sets ``next_turn``, whatever happens): the
        units' skip checks run at once, but the pool takes their tiles in the order the model
        takes the units (else a unit whose check returned first could make the model wait)."""
        try:
            return self._prefetch(message, turn)
        finally:
            next_turn.set()

    def _prefetch(self, message: dict, turn: threading.Event | None = None) -> Prefetched | None:
        try:
            unit = parse_work_unit(message["Body"])
        except MalformedMessage as exc:
            self._dead_letter(message, str(exc))
            return None
        try:  # only registered names: never a fetch of anything else; nor of a redefined one
            source = self.catalog.get(unit.imagery, unit.imagery_digest)
        except ImagerySourceError as exc:
            self._dead_letter(message, str(exc))
            return None
        tiles = unit.tiles()
        keys = {quadkey(x, y, z): (x, y, z) for x, y, z in tiles}
        already = self.store.final_quadkeys(unit.job_id, list(keys))
        todo = [t for qk, t in keys.items() if qk not in already]
        self._count(tiles_seen=len(tiles))
        # Queued at once, after the previous unit's: the pool takes the earlier units' tiles first.
        if turn is not None:
            turn.wait()
        downloads = [self.pool.submit(self._fetch_safe, tile, source) for tile in todo]
        imagery = {"imagery": source.public_name, "imagery_name": unit.imagery or self.catalog.default_name}
        return Prefetched(message, unit, [], None, imagery, downloads)

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
        self._count(malformed=1)
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
        """The model on the unit's tiles, each batch as soon as its tiles are downloaded, and
        their results."""
        bs = self.settings.batch_size
        with_image = [t for t in item.tiles if t.image is not None]  # any tiles already in hand
        masks, sdts = [], []

        def predict(batch: list[FetchedTile]) -> int:
            mask, sdt = self._predict(np.stack([t.image for t in batch]))
            masks.append(mask)
            sdts.append(sdt)
            return len(batch)

        done = 0
        for tile in item.take_downloads():
            if tile.image is not None:
                with_image.append(tile)
            if len(with_image) - done >= bs:
                done += predict(with_image[done : done + bs])
        while done < len(with_image):
            done += predict(with_image[done : done + bs])
        mask_all = np.concatenate(masks) if masks else None
        sdt_all = np.concatenate(sdts) if sdts and sdts[0] is not None else None
        return Inferred(item, self.post.submit(self._results_and_upload, item, with_image, mask_all, sdt_all))

    def _results_and_upload(self, item: Prefetched, with_image: list[FetchedTile], masks, sdt) -> tuple[list[TileResult], Future | None]:
        """On the results thread: the unit's tile results (areas and building counts: CPU-bound
        Python, on one thread so that they never starve the downloads of the GIL), and its
        result object's encoding (zlib releases the GIL) and upload handed to the pool."""
        results, put = self._unit_results(item, with_image, masks, sdt)
        return results, self.pool.submit(self._put_result, *put) if put else None

    def _unit_results(self, item: Prefetched, with_image: list[FetchedTile], masks, sdt) -> tuple[list[TileResult], tuple | None]:
        """The unit's tile results, and the arguments of its result object's upload (None when
        masks are not kept or no tile has one)."""
        unit, unit_id = item.unit, item.unit.unit_id
        results = [
            TileResult(t.x, t.y, t.z, quadkey(t.x, t.y, t.z), t.status, reason=t.reason, unit=unit_id,
                       capture_date=t.capture_date)
            for t in item.tiles
            if t.image is None
        ]
        key = put = None
        if with_image and self.settings.write_masks:
            quadkeys = [quadkey(t.x, t.y, t.z) for t in with_image]
            whole = item.transient is None and len(item.tiles) == unit.tile_count
            key = result_key(unit.job_id, unit_id, quadkeys, whole_unit=whole)
            put = (key, unit.job_id, unit_id, [(t.x, t.y, t.z) for t in with_image], quadkeys, masks, sdt)
        for i, (t, mask) in enumerate(zip(with_image, masks if masks is not None else ())):
            results.append(
                TileResult(
                    t.x, t.y, t.z, quadkey(t.x, t.y, t.z), TILE_DONE,
                    building_area_m2=area_decimal(building_area_m2(mask, t.x, t.y, t.z)),
                    building_pixels=int(np.count_nonzero(mask)),  # (a tenth of a bool sum's time)
                    mask_key=key,
                    unit=unit_id,
                    valid_fraction=fraction_decimal(t.valid_fraction),
                    capture_date=t.capture_date,
                    building_count=tile_count(mask, None if sdt is None else sdt[i], t.z, t.x, t.y, SDT_SCALE),
                )
            )
        return results, put

    def _put_result(self, key, job_id, unit_id, tiles, quadkeys, masks, sdt) -> None:
        """Encode and upload one unit's result object (in the pool)."""
        body = encode_unit_result(job_id, unit_id, tiles, quadkeys, masks, sdt)
        self.s3.put_object(Bucket=self.resources.masks_bucket, Key=key, Body=body, ContentType=RESULT_CONTENT_TYPE)

    def _predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(masks (n, H, W) bool, signed distance (n, H, W) metres or None) of a batch: the sdt
        head's distance is kept for the result object (the outlines need it)."""
        if self.segmenter.info.head == "sdt":
            sdt = self.segmenter.predict_raw(images)[..., 0]
            return sdt > 0, sdt
        return self.segmenter.predict_masks(images), None

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
        results, upload = inferred.results.result()
        if upload is not None:  # the object is stored before the items that point at it
            upload.result()
        provenance = {**self.provenance, **item.imagery, "zoom": unit.zoom, "processed_at": utc_now()}
        stored = self.store.record_tiles(unit.job_id, results, provenance)
        self._count(tiles_new=stored)
        emit_tiles_done(stored)  # the dashboard's tiles-per-minute metric (EMF on stdout)
        if item.transient:
            # Back on the queue after a short delay (not the whole visibility timeout); after
            # maxReceiveCount deliveries it goes to the dead-letter queue.
            self._count(transient=1)
            log.warning("work unit kept for redelivery in %d s: %s", self.settings.retry_delay_s, item.transient)
            self.store.note_retry(unit.job_id, item.transient)  # what `status` and `submit --wait` show
            self.heartbeat.release(item.message["ReceiptHandle"], visible_in_s=self.settings.retry_delay_s)
        else:
            self.sqs.delete_message(
                QueueUrl=self.resources.tile_queue_url, ReceiptHandle=item.message["ReceiptHandle"]
            )
            self.heartbeat.release(item.message["ReceiptHandle"])
        self._count(messages=1)
        # A read first: the conditional write is billed even when it fails, and fails but once.
        if self.store.all_final(unit.job_id) and self.store.try_complete(unit.job_id):
            log.info("job %s complete", unit.job_id)

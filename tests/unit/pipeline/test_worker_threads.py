"""The worker's threads: its helper threads yield the CPU to the model's thread, and its
download pool is started whole before the first unit's downloads are queued."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from looking_glass.pipeline.worker import HELPER_NICE, lower_thread_priority, start_all_threads


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_a_helper_thread_is_niced_and_the_model_thread_is_not():
    before = _nice_of_this_thread()
    with ThreadPoolExecutor(1, initializer=lower_thread_priority) as pool:
        helper = pool.submit(_nice_of_this_thread).result()
    assert helper == min(19, before + HELPER_NICE)
    assert _nice_of_this_thread() == before  # the calling (model's) thread keeps its priority


def test_the_download_pool_is_started_whole():
    pool = ThreadPoolExecutor(8, thread_name_prefix="probe")
    try:
        start_all_threads(pool, 8)
        names = [t.name for t in threading.enumerate() if t.name.startswith("probe")]
        assert len(names) == 8
    finally:
        pool.shutdown()


def test_the_model_runs_each_batch_as_soon_as_its_tiles_are_in():
    """A unit's second batch waits for its slow tile; the first batch does not."""
    import time
    from types import SimpleNamespace

    import numpy as np

    from looking_glass.imagery.tiles import FetchedTile, TransientTileError
    from looking_glass.pipeline.worker import Prefetched, Worker

    slow_tile = threading.Event()
    batches: list[int] = []
    worker = Worker.__new__(Worker)
    worker.settings = SimpleNamespace(batch_size=2)
    worker.segmenter = SimpleNamespace(
        info=SimpleNamespace(head="binary"),
        predict_masks=lambda images: (batches.append(len(images)), np.zeros(images.shape[:3], bool))[1],
    )
    worker.post = ThreadPoolExecutor(1)
    worker._results_and_upload = lambda item, with_image, masks, sdt: (with_image, masks)

    def download(i):
        if i == 3:
            assert slow_tile.wait(10)
        if i == 5:
            return TransientTileError("tile 18/5/0: HTTP 503 after 4 attempts")
        return FetchedTile(i, 0, 18, image=np.full((4, 4, 3), i, np.uint8))

    inferred = []
    with ThreadPoolExecutor(6) as pool:
        item = Prefetched({}, SimpleNamespace(), [], None, {}, [pool.submit(download, i) for i in range(6)])
        model = threading.Thread(target=lambda: inferred.append(worker._infer(item)))
        model.start()
        deadline = time.monotonic() + 10
        while not batches and time.monotonic() < deadline:
            time.sleep(0.01)
        assert batches == [2] and not inferred  # tiles 0 and 1 ran while tile 3 was downloading
        slow_tile.set()
        model.join(10)
    worker.post.shutdown()
    assert batches == [2, 2, 1]
    with_image, masks = inferred[0].results.result()
    assert [t.x for t in with_image] == [0, 1, 2, 3, 4] and masks.shape == (5, 4, 4)
    assert [t.x for t in item.tiles] == [0, 1, 2, 3, 4] and "HTTP 503" in item.transient


def test_units_queue_their_downloads_in_the_order_received_whatever_their_skip_checks_take():
    """The first unit's skip check returns after the second's; its tiles still go first."""
    from types import SimpleNamespace

    from looking_glass.pipeline.worker import Worker, WorkerStats
    from looking_glass.pipeline.workunits import WorkUnit

    job = "ab" * 12
    first, second = (WorkUnit(job, 18, ((132400 + r, 152900, 152904),)) for r in range(2))
    second_checked = threading.Event()

    def final_quadkeys(job_id, quadkeys):
        if quadkeys[0] == first_keys[0]:
            assert second_checked.wait(10)  # the first unit's check is the slow one
        else:
            second_checked.set()
        return set()

    from looking_glass.grid import quadkey

    first_keys = [quadkey(x, y, z) for x, y, z in first.tiles()]
    fetched: list[tuple] = []
    worker = Worker.__new__(Worker)
    worker.catalog = SimpleNamespace(get=lambda name, digest=None: SimpleNamespace(public_name="t"), default_name="d")
    worker.store = SimpleNamespace(final_quadkeys=final_quadkeys)
    worker.stats, worker.stats_lock = WorkerStats(), threading.Lock()
    worker.pool = ThreadPoolExecutor(1)  # one download thread: tiles run in the order queued
    worker._fetch_safe = lambda tile, source: fetched.append(tile)
    start, between, end = threading.Event(), threading.Event(), threading.Event()
    start.set()
    with ThreadPoolExecutor(2) as units:
        jobs = [units.submit(worker._prefetch_in_turn, {"Body": first.to_json()}, start, between),
                units.submit(worker._prefetch_in_turn, {"Body": second.to_json()}, between, end)]
        items = [job.result(10) for job in jobs]
    for item in items:
        for download in item.downloads:
            download.result(10)
    worker.pool.shutdown()
    assert fetched == first.tiles() + second.tiles()
    assert end.is_set()

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

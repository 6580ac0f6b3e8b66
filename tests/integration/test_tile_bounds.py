"""Bounds on one tile's download over real HTTP (the fault-injecting tile server): a byte cap on the
body, a total deadline per attempt (a server trickling bytes), hostile images as failed tiles."""

import threading
import time

import numpy as np
import pytest
from conftest import TESTS_DIR

from looking_glass.imagery.tiles import TransientTileError
from looking_glass.imagery.xyz import TileFetcher

HOSTILE = TESTS_DIR / "data" / "cases" / "tiles-hostile"
Z, X, Y = 18, 132486, 152950


def test_a_trickling_server_is_stopped_at_the_deadline(fault_tiles):
    """One byte every 0.3 s: each read returns within the read timeout, so only a total deadline
    stops it (before: a tile held for minutes under a 1 s timeout)."""
    fault_tiles.set_fault(Z, X, Y, "trickle", delay_s=0.3)
    fetcher = TileFetcher(fault_tiles.url_template, timeout_s=1.0, retries=1)
    t0 = time.monotonic()
    with pytest.raises(TransientTileError, match="deadline"):
        fetcher.fetch(X, Y, Z)
    elapsed = time.monotonic() - t0
    assert elapsed < 2 * 1.0 + 0.2 * 2 + 2 * 0.3 + 0.5, elapsed  # two attempts, backoff, one read each
    assert len(fault_tiles.requests_for(Z, X, Y)) == 2
    fetcher.close()


def test_a_stalled_body_is_bounded_by_the_deadline_too(fault_tiles):
    fault_tiles.set_fault(Z, X, Y, "trickle", delay_s=30)
    fetcher = TileFetcher(fault_tiles.url_template, timeout_s=5.0, retries=0, deadline_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(TransientTileError):
        fetcher.fetch(X, Y, Z)
    assert time.monotonic() - t0 < 2.0
    fetcher.close()


def test_a_trickle_that_finishes_in_time_is_a_tile(fault_tiles):
    fault_tiles.set_fault(Z, X, Y, "trickle", delay_s=0.5)
    fetcher = TileFetcher(fault_tiles.url_template, timeout_s=5.0, retries=0)
    timer = threading.Timer(1.2, fault_tiles.release)  # a few bytes, then the rest at once
    timer.start()
    tile = fetcher.fetch(X, Y, Z)
    timer.join()
    assert tile.image is not None
    fetcher.close()


@pytest.mark.parametrize("send_length", [True, False])
def test_a_body_over_the_byte_cap_is_a_failed_tile(fault_tiles, send_length):
    fault_tiles.set_fault(Z, X, Y, "bytes", body=b"\x89PNG" + b"\0" * 300_000, send_length=send_length)
    fetcher = TileFetcher(fault_tiles.url_template, timeout_s=5.0, retries=2, max_bytes=100_000)
    tile = fetcher.fetch(X, Y, Z)
    assert tile.status == "failed" and "100000" in tile.reason
    assert len(fault_tiles.requests_for(Z, X, Y)) == 1  # final: not retried
    fetcher.close()


@pytest.mark.parametrize(
    "name, reason",
    [("truncated_chunk.png.bin", "not a decodable image"), ("bomb_20000x20000_rgba.png", "")],
)
def test_hostile_images_from_a_server_are_failed_tiles(fault_tiles, name, reason):
    fault_tiles.set_fault(Z, X, Y, "bytes", body=(HOSTILE / name).read_bytes())
    fetcher = TileFetcher(fault_tiles.url_template, timeout_s=5.0, retries=0)
    tile = fetcher.fetch(X, Y, Z)
    assert tile.status == "failed" and reason in tile.reason and tile.reason
    ok = fetcher.fetch(X + 1, Y, Z)
    assert ok.image is not None and ok.image.dtype == np.uint8
    fetcher.close()


def test_trickling_headers_are_cut_at_the_deadline_too(fault_tiles):
    """The status line and headers one byte every 0.3 s: each read returns in time, so only the
    watchdog of the deadline ends the attempt."""
    fault_tiles.set_fault(Z, X, Y, "trickle_headers", delay_s=0.3)
    fetcher = TileFetcher(fault_tiles.url_template, timeout_s=1.0, retries=0)
    t0 = time.monotonic()
    with pytest.raises(TransientTileError, match="deadline"):
        fetcher.fetch(X, Y, Z)
    assert time.monotonic() - t0 < 1.0 + 0.5
    ok = fetcher.fetch(X + 1, Y, Z)  # the fetcher still works after a cut
    assert ok.image is not None
    fetcher.close()

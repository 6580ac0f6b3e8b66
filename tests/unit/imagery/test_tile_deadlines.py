"""One watchdog thread for every download's deadline (``imagery.xyz``): stalled downloads end at
their deadline, however many stall at once, without a thread per tile; an attempt that has its
headers is never cut; the environment is read once per origin, with the result requests gives."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from looking_glass.imagery.tiles import TransientTileError
from looking_glass.imagery.xyz import TileFetcher, _TileSession, _Watchdog

Z, X, Y = 18, 132486, 152950


def test_stalled_downloads_end_at_their_deadline_with_one_watchdog_thread(fault_tiles):
    """Eight tiles whose server never sends a status line (each read would wait its 5 s
    timeout): all end at their 0.6 s deadline, and no thread is started per tile."""
    for i in range(8):
        fault_tiles.set_fault(Z, X + i, Y, "slow", times=1, delay_s=30)
    fetcher = TileFetcher(fault_tiles.url_template, timeout_s=5.0, retries=0, deadline_s=0.6, pool=8)
    assert fetcher.fetch(X + 20, Y, Z).image is not None  # the watchdog thread is running now

    def attempt(i):
        started = time.monotonic()
        with pytest.raises(TransientTileError, match="deadline of 0.6 s"):
            fetcher.fetch(X + i, Y, Z)
        return time.monotonic() - started

    def client_threads() -> set[str]:  # neither the pool's nor the tile server's (one per connection)
        return {t.name for t in threading.enumerate()
                if not t.name.startswith("download") and "process_request" not in t.name}

    with ThreadPoolExecutor(8, thread_name_prefix="download") as pool:
        before, seen = client_threads(), set()
        futures = [pool.submit(attempt, i) for i in range(8)]
        while not all(f.done() for f in futures):
            seen |= client_threads()
            time.sleep(0.01)
        seconds = [f.result() for f in futures]
    assert seen <= before, f"threads started for the downloads: {sorted(seen - before)}"
    assert all(0.55 < s < 0.6 + 0.5 for s in seconds), seconds
    assert [t.name for t in threading.enumerate()].count("tile-deadlines") == 1
    fault_tiles.release()
    fetcher.deadline_s = 30.0  # rendering the released tiles takes the server a while
    assert fetcher.fetch(X, Y, Z).image is not None  # the fetcher still works after the cuts
    fetcher.close()


class _Conn:
    """What the watchdog cuts: an object with a ``sock`` (a real connected socket here)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock


def test_the_watchdog_cuts_late_attempts_and_never_a_finished_one():
    watchdog = _Watchdog()
    late_a, late_b = socket.socketpair()
    done_a, done_b = socket.socketpair()
    late, finished = {"conn": _Conn(late_a)}, {"conn": _Conn(done_a)}
    now = time.monotonic()
    watchdog.watch(finished, now + 0.2)
    watchdog.watch(late, now + 0.3)
    watchdog.done(finished)  # its headers came in time: its connection may serve another tile
    time.sleep(0.6)
    assert late.get("cut") and not finished.get("cut")
    late_b.settimeout(2)
    assert late_b.recv(1) == b""  # shut by the watchdog
    done_a.sendall(b"still open")
    assert done_b.recv(16) == b"still open"
    # A deadline earlier than those waiting wakes the thread for it.
    early_a, early_b = socket.socketpair()
    watchdog.watch({"conn": _Conn(socket.socket())}, time.monotonic() + 30)
    early = {"conn": _Conn(early_a)}
    started = time.monotonic()
    watchdog.watch(early, started + 0.1)
    early_b.settimeout(5)
    assert early_b.recv(1) == b"" and time.monotonic() - started < 1.0
    for s in (late_a, late_b, done_a, done_b, early_a, early_b):
        s.close()


@pytest.mark.parametrize("url", ["http://tiles.example.com/1/2/3.png", "http://127.0.0.1:8080/1/2/3.png",
                                 "https://secure.example.org/a.png", "http://internal.corp/x.png"])
def test_environment_settings_are_those_requests_gives(monkeypatch, url):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.net:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://secure-proxy.example.net:3129")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,.corp")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    ours, theirs = _TileSession(), requests.Session()
    for _ in range(2):  # the second answer comes from the cache
        assert ours.merge_environment_settings(url, {}, True, None, None) == \
            theirs.merge_environment_settings(url, {}, True, None, None)
    explicit = {"http": "http://other:1"}
    assert ours.merge_environment_settings(url, dict(explicit), True, False, None) == \
        theirs.merge_environment_settings(url, dict(explicit), True, False, None)
    assert len(ours._environment) == 1

"""The local tile server accepts a worker's burst of concurrent downloads without stalling them.

A worker opens its pool's connections at once (and a client without keep-alive opens one per
tile: an HTTP/1.0 one here, which the server closes after its answer); with socketserver's
default listen queue of 5, a burst of 64 connections overflows it and the dropped ones wait for a 1 s TCP retransmission (measured:
6 to 14 of 64 took more than 0.9 s).
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

from looking_glass.local.tileserver import SyntheticTileServer


def _get(port: int, path: str) -> float:
    """Seconds to fetch ``path`` over a new connection (the status line and headers only)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:100]  # the server speaks 1.1, and closes a 1.0 client's connection
    return time.perf_counter() - started


def test_a_burst_of_64_connections_is_not_dropped():
    # One small fixed body for every tile: only the connections are measured, not rendering.
    with SyntheticTileServer(latency_s=0.05, tile_source=lambda z, x, y: b"tile") as server:
        port = server.httpd.server_address[1]
        paths = [f"/18/{152900 + i}/132400.png" for i in range(64)]
        with ThreadPoolExecutor(64) as pool:
            seconds = list(pool.map(lambda p: _get(port, p), paths))
    stalled = [s for s in seconds if s > 0.9]
    assert not stalled, f"{len(stalled)} of 64 tiles waited for a TCP retransmission: {sorted(stalled)}"

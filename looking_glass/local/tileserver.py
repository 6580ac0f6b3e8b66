"""A local XYZ tile server (real HTTP on 127.0.0.1) for the synthetic world.

Serves ``/{z}/{x}/{y}.png``; ``/{z}/{x}/{y}.jpg`` serves the synthetic world's tile as JPEG (quality
``JPEG_QUALITY``: satellite imagery services serve JPEG); ``/{z}/{x}/{y}.mask.png`` serves the
ground-truth mask. An optional
per-request latency imitates a remote imagery provider. It speaks HTTP/1.1 with a Content-Length
on every answer, so a client's connection stays open for its next tiles (as a real tile server's
does; a new connection per tile cost both sides CPU); an idle connection is closed after
``KEEP_ALIVE_S``, and ``stop()`` closes every open one.

Fault injection (for tests; off unless set): ``set_fault(z, x, y, kind, times=None)`` makes the
image requests of one tile misbehave, the first ``times`` of them (every one with ``None``), and
then serve normally. Kinds (``FAULT_KINDS``): ``not_found`` (404), ``no_content`` (204),
``server_error`` (500, or ``status=``), ``rate_limited`` (429 with ``Retry-After: retry_after``),
``slow`` (answers only after ``delay_s``, or when ``release()`` is called), ``truncated`` (the
connection closes half-way through the body), ``corrupt`` (a cut-off PNG), ``html`` (an HTML page
with status 200), ``wrong_size`` (a 128x128 PNG), ``blank`` (a single-colour tile), ``trickle``
(headers at once, then the tile's body one byte every ``delay_s``), ``trickle_headers`` (the
status line and headers one byte every ``delay_s``), ``bytes`` (the given ``body``
with status 200, with a Content-Length header unless ``send_length=False``).
Once ``record_requests()`` (or ``set_fault``) has been called, ``requests_for(z, x, y)`` gives the
times (monotonic) of every image request of a tile; by default nothing is recorded.
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from looking_glass.datasets.synthetic import png_bytes, render_tile

TILE_PATH = re.compile(r"^/(\d{1,2})/(\d+)/(\d+)(?:(\.mask)?\.png|(\.jpg))$")
JPEG_QUALITY = 90
FAULT_KINDS = (
    "not_found", "no_content", "server_error", "rate_limited", "slow", "truncated",
    "corrupt", "html", "wrong_size", "blank", "trickle", "trickle_headers", "bytes",
)
# Seconds an open connection may wait for its next request (nginx's keepalive_timeout is 75 s).
KEEP_ALIVE_S = 60.0


@dataclass
class TileFault:
    """How one tile misbehaves: the first ``times`` requests (all with None), then it recovers."""

    kind: str
    times: int | None = None
    status: int = 500  # server_error
    retry_after: float = 1.0  # rate_limited
    delay_s: float = 30.0  # slow: longer than any sane client timeout unless released; trickle
    body: bytes = b""  # bytes
    content_type: str = "image/png"  # bytes
    send_length: bool = True  # bytes


@lru_cache(maxsize=4096)
def _tile_png(z: int, x: int, y: int, mask: bool) -> bytes:
    image, truth = render_tile(z, x, y)
    if mask:
        return png_bytes((truth * 255).astype(np.uint8))
    return png_bytes(image)


@lru_cache(maxsize=4096)
def _tile_jpeg(z: int, x: int, y: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(render_tile(z, x, y)[0]).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    # Keep-alive: the connection serves requests until the client closes it, asks to (a
    # ``Connection: close`` or HTTP/1.0 request) or stays idle for ``timeout`` seconds; every
    # answer says its length (``_send``; ``send_error`` closes the connection after its page).
    protocol_version = "HTTP/1.1"
    timeout = KEEP_ALIVE_S
    # Headers and body are two writes: without TCP_NODELAY the body of a kept-alive connection
    # can wait for the client's delayed ACK of the headers (up to 40 ms on Linux).
    disable_nagle_algorithm = True

    def handle(self):
        """Serve the connection's requests; a client that goes away mid-request or between
        requests (its deadline passed, it closed its pool) ends only this connection, quietly."""
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            self.close_connection = True

    def do_GET(self):  # noqa: N802 - http.server's naming
        match = TILE_PATH.match(self.path.split("?", 1)[0])
        if not match:
            self.send_error(404, "not a tile path")
            return
        z, x, y = (int(match.group(i)) for i in (1, 2, 3))
        if not (0 <= z <= 24 and 0 <= x < 2**z and 0 <= y < 2**z):
            self.send_error(404, "tile outside the grid")
            return
        fault = None if match.group(4) else self.server.take_fault(z, x, y)
        content_type = "image/png"
        if self.server.latency_s:
            time.sleep(self.server.latency_s)
        if fault is not None:
            try:
                self._misbehave(fault, z, x, y)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                pass
            return
        if match.group(5):  # JPEG: the synthetic world only
            if self.server.tile_source is not None:
                self.send_error(404, "this server serves PNG tiles only")
                return
            body, content_type = _tile_jpeg(z, x, y), "image/jpeg"
        elif self.server.tile_source is not None:  # e.g. a GeoTIFF (looking-glass serve-tiles)
            try:
                body = None if match.group(4) else self.server.tile_source(z, x, y)
            except Exception:  # noqa: BLE001 - a read error is the server's, not the client's
                self.send_error(500, "cannot read the tile")
                return
            if body is None:
                self.send_error(404, "no imagery here")
                return
        else:
            body = _tile_png(z, x, y, bool(match.group(4)))
        try:
            self._send(200, body, content_type)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its deadline): not our error
            pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _misbehave(self, fault: TileFault, z: int, x: int, y: int) -> None:
        kind = fault.kind
        if kind == "not_found":
            self._send(404, b"no tile here", "text/plain")
        elif kind == "no_content":
            self._send(204, b"", "text/plain")
        elif kind == "server_error":
            self._send(fault.status, b"upstream trouble", "text/plain")
        elif kind == "rate_limited":
            self._send(429, b"slow down", "text/plain", {"Retry-After": f"{fault.retry_after:g}"})
        elif kind == "slow":
            self.server.wake_event().wait(fault.delay_s)
            self._send(200, _tile_png(z, x, y, False), "image/png")
        elif kind == "truncated":
            body = _tile_png(z, x, y, False)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif kind == "corrupt":
            self._send(200, _tile_png(z, x, y, False)[:300], "image/png")
        elif kind == "html":
            self._send(200, b"<html><body><h1>Service unavailable</h1></body></html>", "text/html")
        elif kind == "wrong_size":
            half = np.ascontiguousarray(render_tile(z, x, y)[0][::2, ::2])
            self._send(200, png_bytes(half), "image/png")
        elif kind == "blank":
            self._send(200, png_bytes(np.full((256, 256, 3), 200, np.uint8)), "image/png")
        elif kind == "trickle":
            body = _tile_png(z, x, y, False)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            wake = self.server.wake_event()
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                if wake.wait(fault.delay_s):
                    self.wfile.write(body[i + 1 :])
                    break
        elif kind == "trickle_headers":
            body = _tile_png(z, x, y, False)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            wake = self.server.wake_event()
            for i in range(len(head)):
                self.wfile.write(head[i : i + 1])
                self.wfile.flush()
                if wake.wait(fault.delay_s):
                    self.wfile.write(head[i + 1 :])
                    break
            self.wfile.write(body)
            self.close_connection = True
        elif kind == "bytes":
            if fault.send_length:
                self._send(200, fault.body, fault.content_type)
            else:
                self.send_response(200)
                self.send_header("Content-Type", fault.content_type)
                self.end_headers()
                self.wfile.write(fault.body)
                self.close_connection = True

    def log_message(self, *args):  # quiet: the demo shows a progress bar instead
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Connections waiting to be accepted. socketserver's default, 5, drops the SYNs of a worker's
    # 32 concurrent downloads (32 new connections at its start, and a new one per tile for a
    # client without keep-alive), and each dropped one costs the client a 1 s TCP
    # retransmission: no real tile server queues so few (nginx: 511).
    request_queue_size = 128
    latency_s = 0.0
    tile_source = None  # callable (z, x, y) -> PNG bytes, or None for 404; None: synthetic

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.faults: dict[tuple[int, int, int], TileFault] = {}
        self.requests: defaultdict[tuple[int, int, int], list[float]] = defaultdict(list)
        self.recording = False
        self._wake = threading.Event()
        self.open_connections: set[socket.socket] = set()  # closed by close_connections()

    def process_request(self, request, client_address):
        with self.lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every open connection (the threads serving them see end of file and stop): after
        ``stop()`` no kept-alive connection is still answered."""
        with self.lock:
            connections = list(self.open_connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by its client
                pass

    def take_fault(self, z: int, x: int, y: int) -> TileFault | None:
        """Record an image request (when recording); the fault it gets, if any (counting one of
        its ``times``)."""
        with self.lock:
            if self.recording:
                self.requests[(z, x, y)].append(time.monotonic())
            fault = self.faults.get((z, x, y))
            if fault is None:
                return None
            if fault.times is not None:
                if fault.times <= 0:
                    return None
                fault.times -= 1
            return fault

    def wake_event(self) -> threading.Event:
        with self.lock:
            return self._wake


class SyntheticTileServer:
    """An HTTP server of 256x256 PNG tiles in a daemon thread: the synthetic world, or the tiles of
    ``tile_source`` (a callable (z, x, y) -> PNG bytes or None); port 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0, tile_source=None):
        self.httpd = _Server((host, port), _Handler)
        self.httpd.latency_s = latency_s
        self.httpd.tile_source = tile_source
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url_template(self) -> str:
        """The XYZ template of this server: ``http://HOST:PORT/{z}/{x}/{y}.png``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{{z}}/{{x}}/{{y}}.png"

    # ---- fault injection (tests) ---------------------------------------------------------
    def set_fault(self, z: int, x: int, y: int, kind: str, times: int | None = None, **params) -> None:
        """Make tile z/x/y misbehave for its next ``times`` image requests (None: all of them)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        with self.httpd.lock:
            self.httpd.faults[(z, x, y)] = TileFault(kind, times, **params)
            self.httpd.recording = True

    def record_requests(self) -> "SyntheticTileServer":
        """From now on remember when each tile was requested (see ``requests_for``)."""
        with self.httpd.lock:
            self.httpd.recording = True
        return self

    def clear_faults(self) -> None:
        """Every tile serves normally again, and the recorded requests are forgotten."""
        with self.httpd.lock:
            self.httpd.faults.clear()
            self.httpd.requests.clear()

    def release(self) -> None:
        """Let every ``slow`` request that is waiting answer now."""
        with self.httpd.lock:
            waiting, self.httpd._wake = self.httpd._wake, threading.Event()
        waiting.set()

    def requests_for(self, z: int, x: int, y: int) -> list[float]:
        """When tile z/x/y was requested since recording began (``time.monotonic()`` seconds)."""
        with self.httpd.lock:
            return list(self.httpd.requests.get((z, x, y), ()))

    def start(self) -> "SyntheticTileServer":
        """Start serving; returns the server."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Answer waiting ``slow`` requests, stop serving, close the listening socket and every
        open connection."""
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.close_connections()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

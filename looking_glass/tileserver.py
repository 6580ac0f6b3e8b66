"""A local XYZ tile server (real HTTP on 127.0.0.1) for the synthetic world.

Serves ``/{z}/{x}/{y}.png``; ``/{z}/{x}/{y}.mask.png`` serves the ground-truth mask. An optional
per-request latency imitates a remote imagery provider.
"""

from __future__ import annotations

import re
import threading
import time
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from .synthetic import png_bytes, render_tile

TILE_PATH = re.compile(r"^/(\d{1,2})/(\d+)/(\d+)(\.mask)?\.png$")


@lru_cache(maxsize=4096)
def _tile_png(z: int, x: int, y: int, mask: bool) -> bytes:
    image, truth = render_tile(z, x, y)
    if mask:
        return png_bytes((truth * 255).astype(np.uint8))
    return png_bytes(image)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self):  # noqa: N802 - http.server's naming
        match = TILE_PATH.match(self.path.split("?", 1)[0])
        if not match:
            self.send_error(404, "not a tile path")
            return
        z, x, y = (int(match.group(i)) for i in (1, 2, 3))
        if not (0 <= z <= 24 and 0 <= x < 2**z and 0 <= y < 2**z):
            self.send_error(404, "tile outside the grid")
            return
        if self.server.latency_s:
            time.sleep(self.server.latency_s)
        if self.server.tile_source is not None:  # e.g. a GeoTIFF (looking-glass serve-tiles)
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
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet: the demo shows a progress bar instead
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    latency_s = 0.0
    tile_source = None  # callable (z, x, y) -> PNG bytes, or None for 404; None: synthetic


class SyntheticTileServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0, tile_source=None):
        self.httpd = _Server((host, port), _Handler)
        self.httpd.latency_s = latency_s
        self.httpd.tile_source = tile_source
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url_template(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{{z}}/{{x}}/{{y}}.png"

    def start(self) -> "SyntheticTileServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

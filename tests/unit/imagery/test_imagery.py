"""Tile download outcomes over real HTTP (a small local server that misbehaves on purpose)."""

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from looking_glass.datasets.synthetic import png_bytes, render_tile
from looking_glass.imagery.tiles import TransientTileError, decode_tile
from looking_glass.imagery.xyz import TileFetcher


def png(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


GOOD = png_bytes(render_tile(18, 1, 1)[0])


class FlakyHandler(BaseHTTPRequestHandler):
    """/ok, /missing, /empty, /html, /small, /flaky (503 twice then OK), /limited (429 once),
    /down (always 500)."""

    hits: dict = {}

    def do_GET(self):  # noqa: N802
        path = self.path.split("/")[1]
        n = self.hits[path] = self.hits.get(path, 0) + 1
        if path == "ok" or (path == "flaky" and n > 2) or (path == "limited" and n > 1):
            self._send(200, GOOD, "image/png")
        elif path == "missing":
            self._send(404, b"", "text/plain")
        elif path == "empty":
            self._send(204, b"", "text/plain")
        elif path == "html":
            self._send(200, b"<html><body>Error</body></html>", "text/html")
        elif path == "small":
            self._send(200, png(np.zeros((128, 128, 3), np.uint8) + 50), "image/png")
        elif path in ("unauthorized", "forbidden"):
            self._send(401 if path == "unauthorized" else 403, b"no", "text/plain")
        elif path == "limited":
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:  # flaky (first tries) and down
            self._send(503 if path == "flaky" else 500, b"", "text/plain")

    def _send(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def flaky_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def fetcher(base, path, retries=3):
    f = TileFetcher(f"{base}/{path}/{{z}}/{{x}}/{{y}}.png", timeout_s=2, retries=retries)
    f._backoff = lambda attempt, retry_after=None: None  # keep the test fast; backoff has its own test
    return f


@pytest.mark.parametrize(
    "path, status, reason",
    [
        ("missing", "no_imagery", "HTTP 404"),
        ("empty", "no_imagery", "HTTP 204"),
        ("html", "failed", "not a decodable image"),
        ("small", "failed", "128x128"),
    ],
)
def test_non_image_responses_get_a_final_status(flaky_server, path, status, reason):
    tile = fetcher(flaky_server, path).fetch(1, 2, 18)
    assert tile.image is None and tile.status == status and reason in tile.reason


def test_good_tile_decodes_to_rgb(flaky_server):
    tile = fetcher(flaky_server, "ok").fetch(1, 2, 18)
    assert tile.image.shape == (256, 256, 3) and tile.image.dtype == np.uint8


def test_5xx_and_429_are_retried_then_succeed(flaky_server):
    assert fetcher(flaky_server, "flaky").fetch(1, 2, 18).image is not None
    assert fetcher(flaky_server, "limited").fetch(1, 2, 18).image is not None


def test_persistent_5xx_is_transient_not_final(flaky_server):
    with pytest.raises(TransientTileError, match="HTTP 500 after 3 attempts"):
        fetcher(flaky_server, "down", retries=2).fetch(1, 2, 18)


def test_blank_and_transparent_tiles_are_skipped_not_zero():
    blank = decode_tile(0, 0, 18, png(np.full((256, 256, 3), 7, np.uint8)))
    assert blank.status == "skipped" and "blank" in blank.reason
    clear = decode_tile(0, 0, 18, png(np.zeros((256, 256, 4), np.uint8)))
    assert clear.status == "skipped" and "transparent" in clear.reason
    corrupt = decode_tile(0, 0, 18, GOOD[:200])
    assert corrupt.status == "failed"


def test_retry_after_is_honoured(monkeypatch):
    slept = []
    monkeypatch.setattr("looking_glass.imagery.xyz.time.sleep", slept.append)
    TileFetcher._backoff(0, "2")
    TileFetcher._backoff(3)
    assert slept[0] == 2.0 and 0 < slept[1] <= 1.6


@pytest.mark.parametrize("path, code", [("unauthorized", 401), ("forbidden", 403)])
def test_refused_access_is_transient_never_a_final_tile_status(flaky_server, path, code):
    # An expired or wrong imagery token must not mark tiles failed for good.
    with pytest.raises(TransientTileError, match=f"HTTP {code}"):
        fetcher(flaky_server, path).fetch(1, 2, 18)


def test_no_wait_after_the_last_attempt(flaky_server):
    waits = []
    f = TileFetcher(f"{flaky_server}/down/{{z}}/{{x}}/{{y}}.png", timeout_s=2, retries=2)
    f._backoff = lambda attempt, retry_after=None: waits.append(attempt)
    with pytest.raises(TransientTileError):
        f.fetch(1, 2, 18)
    assert waits == [0, 1]  # between the three attempts, not after the last

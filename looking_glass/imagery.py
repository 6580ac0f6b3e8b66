"""Downloading XYZ tiles over HTTP and deciding what each response means for the tile.

Outcomes: an image; ``no_imagery`` (404/204); ``skipped`` (a blank, single-colour or fully
transparent tile); ``failed`` (corrupt, not an image, wrong size: no retry can fix these);
``TransientTileError`` (429/5xx/timeouts still failing after retries: the work unit is left on the
queue for redelivery, and so reaches the dead-letter queue if it never succeeds).
"""

from __future__ import annotations

import io
import random
import time
from dataclasses import dataclass

import numpy as np
import requests
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter

from .grid import TILE_SIZE
from .store import TILE_FAILED, TILE_NO_IMAGERY, TILE_SKIPPED

MAX_RETRY_AFTER_S = 60.0


class TransientTileError(RuntimeError):
    pass


@dataclass
class FetchedTile:
    x: int
    y: int
    z: int
    image: np.ndarray | None = None  # (256, 256, 3) uint8 when the tile has imagery
    status: str | None = None  # set when there is no image: no_imagery, skipped, failed
    reason: str | None = None


class TileFetcher:
    def __init__(self, url_template: str, timeout_s: float = 10.0, retries: int = 3, pool: int = 16):
        self.url_template = url_template
        self.timeout_s = timeout_s
        self.retries = retries
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def url(self, x: int, y: int, z: int) -> str:
        return self.url_template.format(x=x, y=y, z=z)

    def fetch(self, x: int, y: int, z: int) -> FetchedTile:
        url = self.url(x, y, z)
        last_error = ""
        for attempt in range(self.retries + 1):
            try:
                resp = self.session.get(url, timeout=self.timeout_s)
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}"
                self._backoff(attempt)
                continue
            if resp.status_code in (404, 204):
                return FetchedTile(x, y, z, status=TILE_NO_IMAGERY, reason=f"HTTP {resp.status_code}")
            if resp.status_code == 429 or resp.status_code >= 500:
                last_error = f"HTTP {resp.status_code}"
                self._backoff(attempt, resp.headers.get("Retry-After"))
                continue
            if resp.status_code != 200:
                return FetchedTile(x, y, z, status=TILE_FAILED, reason=f"HTTP {resp.status_code}")
            return decode_tile(x, y, z, resp.content)
        raise TransientTileError(f"tile {z}/{x}/{y}: {last_error} after {self.retries + 1} attempts")

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None = None) -> None:
        if retry_after:
            try:
                time.sleep(min(float(retry_after), MAX_RETRY_AFTER_S))
                return
            except ValueError:
                pass
        time.sleep(min(8.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0))  # full-ish jitter


def decode_tile(x: int, y: int, z: int, data: bytes) -> FetchedTile:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.size != (TILE_SIZE, TILE_SIZE):
                return FetchedTile(x, y, z, status=TILE_FAILED, reason=f"tile is {img.size[0]}x{img.size[1]}, not {TILE_SIZE}x{TILE_SIZE}")
            rgba = np.asarray(img.convert("RGBA"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return FetchedTile(x, y, z, status=TILE_FAILED, reason=f"not a decodable image: {exc}"[:300])
    if (rgba[..., 3] == 0).all():
        return FetchedTile(x, y, z, status=TILE_SKIPPED, reason="fully transparent (nodata)")
    rgb = rgba[..., :3]
    if (rgb == rgb[0, 0]).all():
        return FetchedTile(x, y, z, status=TILE_SKIPPED, reason="blank (single colour)")
    return FetchedTile(x, y, z, image=np.ascontiguousarray(rgb))

"""One tile from an imagery source: what it holds, how bytes are decoded, when it is blank.

The vocabulary both imagery sources (:mod:`looking_glass.imagery.xyz` over HTTP,
:mod:`looking_glass.imagery.geotiff` from a GeoTIFF/COG) hand the worker. A tile is an image
(256 x 256 RGB uint8), or a final status from :mod:`looking_glass.imagery.status` with a reason;
:class:`TransientTileError` means it cannot be had now and must be retried later.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from looking_glass.grid import TILE_SIZE
from looking_glass.imagery.status import TILE_FAILED, TILE_SKIPPED

__all__ = ["FetchedTile", "TransientTileError", "classify_rgb", "decode_tile"]


class TransientTileError(RuntimeError):
    """The tile cannot be read now (network, throttling, refused token): retry later, never a
    final status."""


@dataclass
class FetchedTile:
    """One tile from an imagery source: an image, or a final status (``imagery.status``) and
    its reason."""

    x: int
    y: int
    z: int
    image: np.ndarray | None = None  # (256, 256, 3) uint8 when the tile has imagery
    status: str | None = None  # set when there is no image: no_imagery, skipped, failed
    reason: str | None = None


def decode_tile(x: int, y: int, z: int, data: bytes) -> FetchedTile:
    """Image bytes (PNG, JPEG, ...) to a FetchedTile: failed when undecodable or not 256x256,
    skipped when fully transparent or one colour, else the RGB image."""
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
    return classify_rgb(x, y, z, rgba[..., :3])


def classify_rgb(x: int, y: int, z: int, rgb: np.ndarray) -> FetchedTile:
    """A (256, 256, 3) uint8 tile with some data: an image, or ``skipped`` when it is blank."""
    if (rgb == rgb[0, 0]).all():
        return FetchedTile(x, y, z, status=TILE_SKIPPED, reason="blank (single colour)")
    return FetchedTile(x, y, z, image=np.ascontiguousarray(rgb))

"""The model's stored per-tile masks, read back: the one place that knows how a worker stores a
tile's mask (today a PNG per tile in the masks bucket, 0 / 255, under the item's ``mask_key``).

Everything that reads predictions back (the demo's pixel and object scores, ``looking-glass
export``) goes through :func:`read_tile_mask` / :func:`read_tile_masks`, so a change of the
storage layout changes this module only.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from looking_glass.errors import LookingGlassError

__all__ = ["MaskError", "read_mask_png", "read_tile_mask", "read_tile_masks"]


class MaskError(LookingGlassError, ValueError):
    """A done tile's stored mask is missing or cannot be read (the message names the tile)."""


def read_mask_png(data: bytes) -> np.ndarray:
    """A mask PNG as the worker stores it (0 / 255, 8-bit) to a (H, W) bool array."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L")) >= 128


def read_tile_mask(s3, bucket: str, item: dict) -> np.ndarray:
    """The model's (256, 256) bool mask of one ``done`` tile item (a results-table item with
    ``x``, ``y``, ``z`` and ``mask_key``), True = building, row 0 north. Raises MaskError when
    the item has no stored mask (the worker ran with LG_WRITE_MASKS=false) or it cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = item.get("mask_key")
    z, x, y = int(item["z"]), int(item["x"]), int(item["y"])
    if not key:
        raise MaskError(f"tile {z}/{x}/{y} has no stored mask (the workers ran with LG_WRITE_MASKS=false)")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise MaskError(f"cannot read the mask s3://{bucket}/{key}: {exc}") from None
    try:
        return read_mask_png(body)
    except OSError as exc:  # PIL's UnidentifiedImageError and truncated files
        raise MaskError(f"the mask s3://{bucket}/{key} is not a readable PNG: {exc}") from None


def read_tile_masks(s3, bucket: str, items: Iterable[dict], threads: int = 8) -> Iterator[tuple[dict, np.ndarray]]:
    """``(item, mask)`` for each item, in the given order, read ``threads`` at a time with a
    bounded look-ahead (memory is that of a few dozen masks, whatever the number of items)."""
    batch = max(1, threads) * 4
    pending: list[dict] = []
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for item in items:
            pending.append(item)
            if len(pending) == batch:
                yield from zip(pending, pool.map(lambda i: read_tile_mask(s3, bucket, i), pending))
                pending = []
        if pending:
            yield from zip(pending, pool.map(lambda i: read_tile_mask(s3, bucket, i), pending))

"""The model's stored per-tile rasters, read back: the one way the project reads a tile's mask.

The worker stores one result object per work unit (``looking_glass.pipeline.unit_results``: a
compressed ``.npz`` under the item's ``mask_key``, with every done tile's mask and, for the
signed-distance head, its signed distance); jobs stored before that have one PNG per tile
(0 / 255), which is still read. Everything that reads predictions back (the demo's pixel and
object scores, ``looking-glass export``) goes through :func:`read_tile_mask`,
:func:`read_tile_masks` or :func:`read_tile_rasters`, so a change of the storage layout changes
this module and ``unit_results`` only. Their names and signatures are kept stable.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from looking_glass.errors import LookingGlassError
from looking_glass.pipeline.unit_results import ResultObjects, TileRasters, TileResultError

__all__ = ["MaskError", "TileRasters", "read_mask_png", "read_tile_mask", "read_tile_masks", "read_tile_rasters",
           "read_tile_rasters_all"]


class MaskError(LookingGlassError, ValueError):
    """A done tile's stored mask is missing or cannot be read: no mask kept, its object missing,
    truncated or corrupt, another job's, or without the tile (the message names the tile)."""


def read_mask_png(data: bytes) -> np.ndarray:
    """A mask PNG as workers before the result objects stored it (0 / 255, 8-bit) to a (H, W)
    bool array."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L")) >= 128


def _png_rasters(s3, bucket: str, key: str, tile: str) -> TileRasters:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise MaskError(f"{tile}: cannot read the mask s3://{bucket}/{key}: {exc}") from None
    try:
        return TileRasters(read_mask_png(body))
    except OSError as exc:  # PIL's UnidentifiedImageError and truncated files
        raise MaskError(f"{tile}: the mask s3://{bucket}/{key} is not a readable PNG: {exc}") from None


def _rasters(objects: ResultObjects, item: dict) -> TileRasters:
    key = item.get("mask_key") or ""
    if key.endswith(".png"):
        z, x, y = int(item["z"]), int(item["x"]), int(item["y"])
        return _png_rasters(objects.s3, objects.bucket, key, f"tile {z}/{x}/{y}")
    try:
        return objects.rasters(item)
    except TileResultError as exc:
        raise MaskError(str(exc)) from None


def read_tile_rasters(s3, bucket: str, item: dict) -> TileRasters:
    """The stored rasters of one ``done`` tile item (a results-table item with ``job_id``,
    ``quadkey``, ``x``, ``y``, ``z`` and ``mask_key``): ``mask`` (256, 256) bool, True =
    building, row 0 north, and ``sdt_m`` (256, 256) float32 signed distance in metres for the
    sdt head (else None). Raises MaskError naming the tile when they cannot be read."""
    return _rasters(ResultObjects(s3, bucket, keep=1), item)


def read_tile_mask(s3, bucket: str, item: dict) -> np.ndarray:
    """The model's (256, 256) bool mask of one ``done`` tile item (see :func:`read_tile_rasters`),
    True = building, row 0 north. Raises MaskError when the item has no stored mask (the worker
    ran with LG_WRITE_MASKS=false) or it cannot be read. For many tiles use
    :func:`read_tile_masks`, which fetches each unit's object once."""
    return read_tile_rasters(s3, bucket, item).mask


def read_tile_rasters_all(s3, bucket: str, items: Iterable[dict], threads: int = 8) -> Iterator[tuple[dict, TileRasters]]:
    """``(item, rasters)`` (:class:`TileRasters`: mask and, for the sdt head, signed distance) for
    each item, in the given order, read ``threads`` at a time with a bounded look-ahead; each
    result object is fetched once however many of its tiles are asked for in a row (memory: a few
    dozen objects at most, whatever the number of items). Raises MaskError, naming the tile, at
    the first tile that cannot be read."""
    threads = max(1, threads)
    batch = threads * 4
    objects = ResultObjects(s3, bucket, keep=batch)
    pending: list[dict] = []
    with ThreadPoolExecutor(threads) as pool:
        for item in items:
            pending.append(item)
            if len(pending) == batch:
                yield from zip(pending, pool.map(lambda i: _rasters(objects, i), pending))
                pending = []
        if pending:
            yield from zip(pending, pool.map(lambda i: _rasters(objects, i), pending))


def read_tile_masks(s3, bucket: str, items: Iterable[dict], threads: int = 8) -> Iterator[tuple[dict, np.ndarray]]:
    """``(item, mask)`` for each item, in the given order: :func:`read_tile_rasters_all`'s masks."""
    for item, rasters in read_tile_rasters_all(s3, bucket, items, threads):
        yield item, rasters.mask

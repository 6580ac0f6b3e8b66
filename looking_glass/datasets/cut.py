"""Cutting one image into training chips: the native pixel grid or the zoom-18 tile grid.

What :func:`looking_glass.datasets.prepare.prepare` runs for each image (in its own process with
``jobs > 1``). Every chip is read window by window (:meth:`looking_glass.imagery.raster.RasterImage.read`),
so memory does not grow with the image. A chip's nodata fraction is checked before its colours and
signed distance are computed, so the empty parts of a large sparse image cost only their reads.

Native mode cuts ``chip_size`` px chips every ``stride`` px (overlapping when ``stride <
chip_size``); chip ``r``/``c`` in the id are the chip's step numbers, ``row``/``col`` in the manifest
too, ``offset_px`` its top-left pixel. The split block of a chip is taken from its pixel offset in
units of ``chip_size`` (:func:`looking_glass.datasets.split.block_split`), so overlapping chips of
one block share their split; only chips straddling a block edge overlap chips of the other split.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from affine import Affine

from looking_glass.datasets.chips import Chip, DatasetWriter
from looking_glass.datasets.labels import project_footprints, rasterize_footprints, signed_distance_m
from looking_glass.datasets.split import TILES_SPLIT_SOURCE, block_split
from looking_glass.grid import ZOOM, pixel_row_areas_m2, tile_mercator_bounds, tile_resolution_m
from looking_glass.imagery.raster import RasterImage, mercator_outline, pixel_size_m

__all__ = ["chip_steps", "cut_native", "cut_tiles", "image_tiles"]

Tick = Callable[[int], None]


def chip_steps(length: int, size: int, stride: int) -> int:
    """Chips of ``size`` px every ``stride`` px needed to cover ``length`` px (at least 1)."""
    return 1 if length <= size else math.ceil((length - size) / stride) + 1


def _margin_px(clip_m: float, px: tuple[float, float]) -> int:
    return int(math.ceil(clip_m / min(px))) + 1


def _nodata_fraction(data: np.ndarray, margin: int, size: int) -> float:
    """The nodata fraction of the chip inside the expanded (3, S+2m, S+2m) ``data``."""
    core = data[:, margin : margin + size, margin : margin + size]
    return float(np.isnan(core).any(0).mean())


def _finish_chip(
    img: RasterImage, data: np.ndarray, footprint_mask: np.ndarray, margin: int, size: int, px: tuple[float, float], clip_m: float
):
    """Expanded (3, S+2m, S+2m) data and footprint raster -> image, mask, sdt."""
    valid = ~np.isnan(data).any(0)
    mask_full = (footprint_mask > 0) & valid
    sdt = signed_distance_m(mask_full, px, clip_m)
    crop = (slice(margin, margin + size), slice(margin, margin + size))
    image = img.to_uint8(data[:, crop[0], crop[1]])
    return image, mask_full[crop].astype(np.uint8), sdt[crop]


def _dropped(data: np.ndarray, margin: int, size: int, cfg, writer: DatasetWriter) -> float | None:
    """The chip's nodata fraction, or None (counted as dropped) when it has too much nodata."""
    nodata = _nodata_fraction(data, margin, size)
    if nodata >= 1.0 or nodata > cfg.max_nodata_fraction:
        writer.drop("nodata")
        return None
    return nodata


def cut_native(img: RasterImage, chip_id: str, layers, cfg, writer: DatasetWriter, tick: Tick = lambda n: None) -> int:
    """Add the native-grid chips of ``img`` (labelled by the footprint ``layers``) to ``writer``
    by the rules of ``cfg`` (a PrepareConfig); ``tick(1)`` after each candidate; returns the
    number of candidates."""
    from rasterio.transform import array_bounds

    src, s = img.src, cfg.chip_size
    b = img.bounds
    lat = None
    if src.crs.is_geographic:
        lat = (b.bottom + b.top) / 2
    px = pixel_size_m(src.crs, img.transform, lat)
    margin = _margin_px(cfg.sdt_clip_m, px)
    step = cfg.stride or s
    rows, cols = chip_steps(src.height, s, step), chip_steps(src.width, s, step)
    # Footprints near the whole (padded) chip grid, in the image's CRS.
    left, top = img.transform @ (-margin, -margin)
    right, bottom = img.transform @ ((cols - 1) * step + s + margin, (rows - 1) * step + s + margin)
    near = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    geoms, tree = project_footprints(layers, src.crs, near)
    crs_text = src.crs.to_string()
    n = 0
    for r in range(rows):
        for c in range(cols):
            n += 1
            tick(1)
            y, x = r * step, c * step
            size = s + 2 * margin
            data = img.read(y - margin, x - margin, size, size)
            nodata = _dropped(data, margin, s, cfg, writer)
            if nodata is None:
                continue
            t_exp = img.transform @ Affine.translation(x - margin, y - margin)
            fp = rasterize_footprints(geoms, tree, t_exp, (size, size))
            t_chip = img.transform @ Affine.translation(x, y)
            chip_px = px
            if src.crs.is_geographic:  # metres per degree of longitude change with latitude
                chip_px = pixel_size_m(src.crs, img.transform, (t_chip @ (s / 2, s / 2))[1])
            image, mask, sdt = _finish_chip(img, data, fp, margin, s, chip_px, cfg.sdt_clip_m)
            west, south, east, north = array_bounds(s, s, t_chip)
            split = block_split(
                Path(img.label).name, y // s, x // s, split_block=cfg.split_block, val_fraction=cfg.val_fraction, seed=cfg.seed
            )
            writer.add(
                Chip(
                    id=f"{chip_id}_r{r:03d}_c{c:03d}",
                    split=split,
                    image=image,
                    mask=mask,
                    sdt=sdt,
                    source=img.label,
                    crs=crs_text,
                    bounds=(west, south, east, north),
                    pixel_size_m=chip_px,
                    meta={"row": r, "col": c, "offset_px": [y, x], "nodata_fraction": round(nodata, 6)},
                )
            )
    return n


def image_tiles(src) -> tuple[list, object]:
    """The zoom-18 tiles (mercantile) that the footprint of the open dataset ``src`` touches,
    and that footprint in web mercator (shapely)."""
    import mercantile
    import shapely
    from rasterio.warp import transform_bounds

    # The image's outline in web mercator (densified edges), to skip tiles it does not touch.
    outline = mercator_outline(src)
    xs, ys = src.transform @ (np.array([0, src.width, 0, src.width]), np.array([0, 0, src.height, src.height]))
    west, south, east, north = transform_bounds(src.crs, "EPSG:4326", min(xs), min(ys), max(xs), max(ys), densify_pts=21)
    tiles = [t for t in mercantile.tiles(west, south, east, north, ZOOM)
             if outline.intersects(shapely.box(*tile_mercator_bounds(t.x, t.y, ZOOM)))]
    return tiles, outline


def cut_tiles(img: RasterImage, chip_id: str, layers, cfg, writer: DatasetWriter, tick: Tick = lambda n: None) -> int:
    """Add the zoom-18 tile chips of ``img`` (labelled by ``layers``) to ``writer`` by the rules
    of ``cfg``; ``tick(1)`` after each candidate; returns the number of candidates."""
    import shapely
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, reproject, transform_bounds
    from rasterio.windows import from_bounds

    src, s = img.src, cfg.chip_size
    merc = CRS.from_epsg(3857)
    tiles, outline = image_tiles(src)
    if not tiles:
        return 0

    margin = max(_margin_px(cfg.sdt_clip_m, (tile_resolution_m(t.x, t.y, ZOOM),) * 2) for t in tiles)
    size = s + 2 * margin
    mb = shapely.bounds(outline)
    first = tile_mercator_bounds(tiles[0].x, tiles[0].y, ZOOM)
    pad = (margin + 1) * (first[2] - first[0]) / s
    geoms, tree = project_footprints(layers, merc, (mb[0] - pad, mb[1] - pad, mb[2] + pad, mb[3] + pad))
    n = 0
    for t in tiles:
        n += 1
        tick(1)
        left, bottom, right, top = tile_mercator_bounds(t.x, t.y, ZOOM)
        res = (right - left) / s
        t_exp = Affine(res, 0.0, left - margin * res, 0.0, -res, top + margin * res)
        exp_bounds = (left - margin * res, bottom - margin * res, right + margin * res, top + margin * res)
        sb = transform_bounds(merc, src.crs, *exp_bounds, densify_pts=21)
        win = from_bounds(*sb, transform=img.transform)
        row0 = int(math.floor(win.row_off)) - 2
        col0 = int(math.floor(win.col_off)) - 2
        r1 = min(int(math.ceil(win.row_off + win.height)) + 2, src.height)
        c1 = min(int(math.ceil(win.col_off + win.width)) + 2, src.width)
        row0, col0 = max(row0, 0), max(col0, 0)
        dst = np.full((3, size, size), np.nan, np.float32)
        if r1 > row0 and c1 > col0:
            data = img.read(row0, col0, r1 - row0, c1 - col0)
            if not np.isnan(data).all():
                reproject(
                    source=data,
                    destination=dst,
                    src_transform=img.transform @ Affine.translation(col0, row0),
                    src_crs=src.crs,
                    src_nodata=np.nan,
                    dst_transform=t_exp,
                    dst_crs=merc,
                    dst_nodata=np.nan,
                    resampling=Resampling.bilinear,
                    num_threads=1,
                )
        nodata = _dropped(dst, margin, s, cfg, writer)
        if nodata is None:
            continue
        g = tile_resolution_m(t.x, t.y, ZOOM)
        fp = rasterize_footprints(geoms, tree, t_exp, (size, size))
        image, mask, sdt = _finish_chip(img, dst, fp, margin, s, (g, g), cfg.sdt_clip_m)
        area = float(mask.sum(axis=1, dtype=np.float64) @ pixel_row_areas_m2(t.x, t.y, ZOOM, s))
        split = block_split(
            TILES_SPLIT_SOURCE, t.y, t.x, split_block=cfg.split_block, val_fraction=cfg.val_fraction, seed=cfg.seed
        )
        writer.add(
            Chip(
                id=f"{chip_id}_{ZOOM}_{t.x}_{t.y}",
                split=split,
                image=image,
                mask=mask,
                sdt=sdt,
                source=img.label,
                crs="EPSG:3857",
                bounds=(left, bottom, right, top),
                pixel_size_m=(g, g),
                building_area_m2=area,
                meta={"tile": [ZOOM, t.x, t.y], "nodata_fraction": round(nodata, 6)},
            )
        )
    return n

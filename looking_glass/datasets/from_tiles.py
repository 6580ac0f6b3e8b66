"""Training chips from an imagery source over an AOI: ``prepare --imagery SOURCE --aoi AOI``.

The way OSM-based tools make training data: the zoom-18 tiles covering the AOI are fetched from
the worker's own imagery source (an XYZ/TMS template through
:class:`looking_glass.imagery.xyz.TileFetcher` with its token handling, bounds and retries, or a
GeoTIFF/mosaic source: whatever :func:`looking_glass.imagery.xyz.open_imagery` opens) and labelled
with the footprints. So training sees exactly the pixels the workers will see.

Rules
-----
* Chips are the AOI's zoom-18 tiles (:func:`looking_glass.tiling.cover.tile_runs`), as in
  ``prepare --mode tiles``: ids ``<source id>_18_<x>_<y>``, EPSG:3857 bounds, the same split
  (:func:`looking_glass.datasets.split.block_split` on ``web-mercator-z18``), latitude-correct
  building areas. The chip's ``source`` is the imagery's public name (no query string, no token).
* A tile the source answers without an image (``no_imagery``, ``skipped``, ``failed``) is dropped
  and counted by status (``counts.dropped_<status>``); a tile with an image is dropped for nodata
  like any chip (black pixels are nodata).
* Labels beyond the tile's edge are known (the footprints), so the signed distance near a tile's
  edge sees buildings that cross it, as in the other modes.
* At most ``MAX_TILES`` tiles (checked from the AOI's cheap lower bound first, then the cover):
  a larger AOI is one error, before any tile is fetched.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from affine import Affine

from looking_glass.datasets.chips import Chip, DatasetWriter, check_out_dir
from looking_glass.datasets.errors import PrepareError
from looking_glass.datasets.inputs import expand_inputs, localize
from looking_glass.datasets.labels import load_footprints, project_footprints, rasterize_footprints, signed_distance_m
from looking_glass.datasets.split import TILES_SPLIT_SOURCE, block_split, fit_split_block
from looking_glass.grid import TILE_SIZE, ZOOM, pixel_row_areas_m2, tile_mercator_bounds, tile_resolution_m

__all__ = ["MAX_TILES", "prepare_from_source"]

MAX_TILES = 200_000  # about 700 km2 at zoom 18 near the equator


def _aoi_tiles(aoi_geometry) -> list[tuple[int, int]]:
    from looking_glass.tiling.cover import count_tiles, iter_tiles, tile_runs
    from looking_glass.tiling.plan import tile_count_lower_bound

    low = tile_count_lower_bound(aoi_geometry, ZOOM)
    if low > MAX_TILES:
        raise PrepareError(f"the AOI covers at least {low:,} zoom-{ZOOM} tiles; prepare takes at most {MAX_TILES:,}: split it")
    runs = tile_runs(aoi_geometry, ZOOM)
    n = count_tiles(runs)
    if n == 0:
        raise PrepareError(f"the AOI covers no zoom-{ZOOM} tile")
    if n > MAX_TILES:
        raise PrepareError(f"the AOI covers {n:,} zoom-{ZOOM} tiles; prepare takes at most {MAX_TILES:,}: split it")
    return [(x, y) for x, y, _ in iter_tiles(runs, ZOOM)]


def _source_id(name: str) -> str:
    """The chip id prefix of an imagery source: a URL's host (and port), a file's stem."""
    from urllib.parse import urlsplit

    from looking_glass.datasets.inputs import file_id

    if "://" in name and not name.startswith("s3://"):
        word = urlsplit(name).netloc
    else:
        word = file_id(name.split(",")[0])
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in word) or "imagery"


def _margin(cfg, y: int) -> int:
    return int(np.ceil(cfg.sdt_clip_m / tile_resolution_m(0, y, ZOOM))) + 1


def _chip(fetched, geoms, tree, cfg, name: str, prefix: str) -> tuple[Chip | None, str | None]:
    """The chip of one fetched tile, or (None, the drop reason)."""
    if fetched.image is None:
        return None, fetched.status or "failed"
    x, y, s = fetched.x, fetched.y, TILE_SIZE
    image = np.asarray(fetched.image, np.uint8)
    valid = image.any(-1)
    nodata = 1.0 - float(valid.mean())
    if nodata >= 1.0 or nodata > cfg.max_nodata_fraction:
        return None, "nodata"
    m = _margin(cfg, y)
    left, bottom, right, top = tile_mercator_bounds(x, y, ZOOM)
    res = (right - left) / s
    t_exp = Affine(res, 0.0, left - m * res, 0.0, -res, top + m * res)
    footprint = rasterize_footprints(geoms, tree, t_exp, (s + 2 * m, s + 2 * m)) > 0
    footprint[m : m + s, m : m + s] &= valid  # no label on a black pixel; beyond the tile: the labels
    g = tile_resolution_m(x, y, ZOOM)
    sdt = signed_distance_m(footprint, (g, g), cfg.sdt_clip_m)[m : m + s, m : m + s]
    mask = footprint[m : m + s, m : m + s].astype(np.uint8)
    area = float(mask.sum(axis=1, dtype=np.float64) @ pixel_row_areas_m2(x, y, ZOOM, s))
    split = block_split(TILES_SPLIT_SOURCE, y, x, split_block=cfg.split_block, val_fraction=cfg.val_fraction, seed=cfg.seed)
    meta = {"tile": [ZOOM, x, y], "nodata_fraction": round(nodata, 6)}
    if fetched.capture_date:
        meta["capture_date"] = fetched.capture_date
    return Chip(id=f"{prefix}_{ZOOM}_{x}_{y}", split=split, image=image, mask=mask, sdt=sdt, source=name,
                crs="EPSG:3857", bounds=(left, bottom, right, top), pixel_size_m=(g, g), building_area_m2=area,
                meta=meta), None


def prepare_from_source(
    source,
    aoi_geometry,
    footprints: Sequence[str],
    out_dir: str | os.PathLike,
    config,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    jobs: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Chip the zoom-18 tiles of ``aoi_geometry`` (shapely, lon/lat) fetched from ``source`` (an
    open imagery source: ``fetch(x, y, z) -> FetchedTile`` and ``public_name``), labelled by
    ``footprints`` (GeoJSON paths, globs or s3://, every file labels every tile), into ``out_dir``
    by ``config`` (a PrepareConfig in tiles mode); ``jobs`` tiles are fetched at a time. Returns
    the manifest. Raises PrepareError for bad inputs before anything is fetched."""
    import shapely

    cfg = config
    cfg.validate()
    if cfg.mode != "tiles":
        raise PrepareError("chips from an imagery source are the zoom-18 tiles: use mode 'tiles'")
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    check_out_dir(out, overwrite)
    if not footprints:
        raise PrepareError("no footprint files given")
    tiles = _aoi_tiles(aoi_geometry)
    asked_block = cfg.split_block
    block, split_note = fit_split_block([(TILES_SPLIT_SOURCE, y, x) for x, y in tiles], cfg.split_block,
                                        cfg.val_fraction, cfg.seed)
    cfg = replace(cfg, split_block=block)  # per chip when the tiles make too few blocks
    name = getattr(source, "public_name", "imagery")
    prefix = _source_id(name)
    with tempfile.TemporaryDirectory(prefix="lg-prepare-") as tmp:
        paths = expand_inputs([str(p) for p in footprints], "footprints")
        layers = [load_footprints(localize(p, Path(tmp)), p) for p in paths]
    from rasterio.crs import CRS
    from rasterio.warp import transform_bounds

    west, south, east, north = shapely.bounds(aoi_geometry)
    mb = transform_bounds("EPSG:4326", "EPSG:3857", west, south, east, north)
    pad = 40.0  # metres: more than any SDT margin
    geoms, tree = project_footprints(layers, CRS.from_epsg(3857), (mb[0] - pad, mb[1] - pad, mb[2] + pad, mb[3] + pad))
    with DatasetWriter(out, chip_size=TILE_SIZE, shard_size=cfg.shard_size, overwrite=overwrite, compress=cfg.compress) as writer:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            step = max(1, jobs) * 8  # tiles in flight: memory stays bounded
            for i in range(0, len(tiles), step):
                batch = tiles[i : i + step]
                for fetched in pool.map(lambda t: source.fetch(t[0], t[1], ZOOM), batch):
                    chip, reason = _chip(fetched, geoms, tree, cfg, name, prefix)
                    if chip is None:
                        writer.drop(reason)
                    else:
                        writer.add(chip)
                if progress is not None:
                    progress(i + len(batch), len(tiles))
        warnings = split_note + [w for fp in layers for w in fp.warnings]
        if not writer.chips:
            warnings.append("no chips written: the source gave no usable tile over the AOI (see counts.dropped_*)")
        for w in warnings:
            say(f"warning: {w}")
        say(f"{name}: {len(tiles)} tiles, {len(writer.chips)} written, {sum(writer.dropped.values())} dropped")
        return writer.commit(
            mode="tiles",
            sources={
                "imagery": {"source": name, "tiles": len(tiles), "written_chips": len(writer.chips)},
                "footprints": [{"path": fp.source, "crs": fp.crs.to_string(), "polygons": len(fp.geoms), "empty": fp.empty}
                               for fp in layers],
            },
            parameters=cfg.parameters(),
            **cfg.split_words(asked_block),
            warnings=warnings,
        )

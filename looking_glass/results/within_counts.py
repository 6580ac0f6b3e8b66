"""``results JOB --within POLYGONS``: how many buildings each polygon holds, counted on the job's
outlines rather than estimated from per-tile counts.

A tile's ``building_count`` cannot be split between the polygons that cut the tile without knowing
where its buildings are, so weighting it by the fraction of the tile inside gives fractions (3.4
buildings). Here the job's stored masks of the tiles in and around the polygons are outlined and
stitched exactly as ``export`` does (:func:`looking_glass.results.buildings.job_building_rows`),
and a building counts in each polygon that holds its counting point (its centroid, or a point on
its surface when the centroid falls outside it), where that point is in one of the job's done
tiles: the rule of ``results --compare --within``'s ``predicted_count``, so the two agree.

Read: the tile items under the polygons' common quadkey prefix (one key range, as ``--within``
already reads) and the masks of the done tiles within :data:`MARGIN_TILES` of a polygon (so a
building cut by a polygon's tiles is stitched whole unless it reaches further than that).
"""

from __future__ import annotations

import numpy as np
import shapely

from looking_glass.grid import TILE_SIZE, ZOOM, tile_from_quadkey
from looking_glass.imagery.status import TILE_DONE
from looking_glass.outlines.gap import region_counts, within_regions
from looking_glass.pipeline.store import ResultsStore
from looking_glass.results.buildings import job_building_rows
from looking_glass.results.query import quadkey_prefix_of

__all__ = ["MARGIN_TILES", "within_outline_counts"]

MARGIN_TILES = 1  # done tiles this close to a polygon are outlined too, to stitch its buildings whole


def _items_near(store: ResultsStore, job_id: str, polygons: list[dict], regions: np.ndarray) -> list[dict]:
    """The job's tile items within :data:`MARGIN_TILES` of any polygon, row-major (y, then x),
    as the stitcher takes them."""
    prefix = quadkey_prefix_of([p["geometry"] for p in polygons])
    near = shapely.buffer(shapely.union_all(regions), MARGIN_TILES * TILE_SIZE, quad_segs=1)
    shapely.prepare(near)
    items = []
    for item in store.query_tiles(job_id, prefix):
        x, y, _ = tile_from_quadkey(item["quadkey"])
        if shapely.intersects(near, shapely.box(x * TILE_SIZE, y * TILE_SIZE, (x + 1) * TILE_SIZE, (y + 1) * TILE_SIZE)):
            items.append({**item, "x": x, "y": y, "z": ZOOM})
    items.sort(key=lambda i: (i["y"], i["x"]))
    return items


def within_outline_counts(store: ResultsStore, s3, bucket: str, job_id: str, polygons: list[dict],
                          progress=None) -> list[int] | None:
    """For each of ``polygons`` (``[{"name", "geometry"}]``, lon/lat, as
    :func:`looking_glass.results.polygons.read_within_polygons` gives them) the number of the job's
    buildings it holds (see the module docstring), in order; None where the job has a done tile
    near the polygons without a stored mask (workers run with ``LG_WRITE_MASKS=false``): there
    are no outlines to count. ``progress``: an object with ``total`` (set to the number of masks
    to read) and ``update(n)``, e.g. :class:`looking_glass.pipeline.progress.CountBar`. Raises
    :class:`looking_glass.results.masks.MaskError` naming the tile when a stored mask cannot be
    read."""
    regions = within_regions(polygons)
    items = _items_near(store, job_id, polygons, regions)
    done = [i for i in items if i["status"] == TILE_DONE]
    if any(not i.get("mask_key") for i in done):
        return None
    held = {(i["x"], i["y"]) for i in done}
    if progress is not None:
        progress.total = len(done)
    counts = np.zeros(len(polygons), dtype=np.int64)
    for _, buildings in job_building_rows(s3, bucket, done, progress=getattr(progress, "update", None)):
        counts += region_counts(buildings, regions, held)
    return [int(c) for c in counts]

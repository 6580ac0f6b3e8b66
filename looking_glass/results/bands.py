"""A job's tile items in row bands: row-major order (y, then x) without holding the job's tile list.

The results table keys a job's tiles by quadkey, an order that interleaves rows (Z-order), so a
row-major pass over a job used to read every item and sort them. Here tiles are read per
zoom-``band_zoom`` parent tile instead: a *band* is one row of those parents (``2 ** (18 -
band_zoom)`` rows of zoom-18 tiles, the job's whole width), read by one key-range query per parent
and sorted. The parents holding tiles are found by descending the quadtree from the smallest tile
holding the job (the common prefix of its first and last quadkey), keeping only children that hold
a tile (a one-item query each): a sparse or oddly shaped job costs no query per empty parent
below the band zoom, and what is held is the current band plus the quadtree path to it.

Memory: one band of items (a few hundred bytes each; 16 rows x the job's width in tiles at the
default zoom 14), whatever the job's height.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from looking_glass.grid import ZOOM, tile_bounds, tile_from_quadkey
from looking_glass.imagery.status import TILE_DONE
from looking_glass.pipeline.store import ResultsStore
from looking_glass.results.query import ResultsError

__all__ = ["BAND_ZOOM", "TileBand", "job_bands", "job_done_bounds", "job_items"]

BAND_ZOOM = 14  # bands of 16 rows of zoom-18 tiles


@dataclass
class TileBand:
    """One band: zoom-18 tile rows ``y0`` (first) to ``y1`` (past the last) and the job's tile
    items in them, row-major (y, then x)."""

    y0: int
    y1: int
    items: list[dict]


def _parent_rows(store: ResultsStore, job_id: str, prefix: str, band_zoom: int) -> Iterator[tuple[int, list[str]]]:
    """``(row, quadkeys)`` of the zoom-``band_zoom`` tiles under ``prefix`` that may hold job tiles,
    one pair per row, rows ascending and quadkeys west to east. Children are checked for tiles
    down to one level above ``band_zoom`` (the band's own queries answer the last level)."""
    if len(prefix) == band_zoom:
        yield tile_from_quadkey(prefix)[1], [prefix]
        return
    children = [prefix + d for d in "0123"]  # north-west, north-east, south-west, south-east
    if len(prefix) + 1 < band_zoom:
        children = [c for c in children if store.has_tiles(job_id, c)]
    for half in ("01", "23"):  # the northern children's rows, then the southern ones'
        rows = [_parent_rows(store, job_id, c, band_zoom) for c in children if c[-1] in half]
        merged = heapq.merge(*rows, key=lambda r: r[0])  # stable: the western child first
        for y, group in itertools.groupby(merged, key=lambda r: r[0]):
            yield y, [qk for _, qks in group for qk in qks]


def job_bands(store: ResultsStore, job_id: str, band_zoom: int = BAND_ZOOM, threads: int = 4) -> Iterator[TileBand]:
    """The job's tile items (every status, every attribute) band by band, north to south (see the
    module docstring); bands without items are left out. Raises ResultsError for a band zoom
    outside 1..18."""
    if not 1 <= band_zoom <= ZOOM:
        raise ResultsError(f"band zoom {band_zoom} must be between 1 and {ZOOM}")
    extent = store.quadkey_extent(job_id)
    if extent is None:
        return
    root = os.path.commonprefix(list(extent))[:band_zoom]
    span = 2 ** (ZOOM - band_zoom)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for y, parents in _parent_rows(store, job_id, root, band_zoom):
            parts = pool.map(lambda qk: list(store.query_tiles(job_id, qk)), parents)
            items = [item for part in parts for item in part]
            if items:
                items.sort(key=lambda i: (int(i["y"]), int(i["x"])))
                yield TileBand(y * span, (y + 1) * span, items)


def job_done_bounds(store: ResultsStore, job_id: str) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) lon/lat of the job's ``done`` tiles, or None without any: one
    pass over the job's items reading their x, y and status only, holding four numbers."""
    west = north = east = south = None
    for item in store.query_tiles(job_id, attributes=("x", "y", "status")):
        if item["status"] != TILE_DONE:
            continue
        x, y = int(item["x"]), int(item["y"])
        west, east = min(x, west if west is not None else x), max(x, east if east is not None else x)
        north, south = min(y, north if north is not None else y), max(y, south if south is not None else y)
    if west is None:
        return None
    w, _, _, n = tile_bounds(west, north, ZOOM)
    _, s, e, _ = tile_bounds(east, south, ZOOM)
    return w, s, e, n


def job_items(store: ResultsStore, job_id: str, band_zoom: int = BAND_ZOOM) -> Iterator[dict]:
    """Every tile item of the job in row-major order (y, then x), read band by band
    (:func:`job_bands`)."""
    for band in job_bands(store, job_id, band_zoom):
        yield from band.items

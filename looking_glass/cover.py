"""Tile cover: which tiles of a zoom level an AOI covers, as runs of consecutive tiles per row.

Semantics: a tile is in the cover if and only if the interior of the tile and the interior of the
AOI intersect (a tile that only touches the AOI along an edge or at a corner is out). The AOI's
edges are straight lines in longitude/latitude, as GeoJSON (RFC 7946) says.

Method: a slab scanline, exact and vectorised, with work proportional to the boundary and the
number of rows, never to the bounding box or the number of tiles.
1. Work in "tile-x / latitude" space: x is longitude scaled to tile units (an affine map, so edges
   stay straight) and y stays latitude.
2. Cut the plane into horizontal slabs at every vertex latitude and every tile-row edge. Inside a
   slab no edge starts, ends or crosses another, so the AOI there is a set of trapezoids, found by
   sorting the slab's edges by x and pairing them (even-odd rule; holes and parts included).
3. A trapezoid with left edge l(y) and right edge r(y) has the open x-projection
   (min l, max r); tile column c meets it iff c < max r and c + 1 > min l, i.e. the run
   [floor(min l), ceil(max r)). Each slab lies in one tile row, so merging the runs per row gives
   the cover.
"""

from __future__ import annotations

import numpy as np
import shapely

from .grid import MAX_LATITUDE, ZOOM

# Coordinates within this many tiles of a tile edge are snapped onto it, so an AOI drawn exactly
# on tile edges (e.g. from mercantile.bounds) does not pick up a neighbour through rounding.
SNAP_TILES = 1e-9
# Trapezoids narrower than this (in tiles, on average) are rounding noise of zero-width spikes.
MIN_WIDTH_TILES = 1e-11


def _row_edge_lats(rows: np.ndarray, zoom: int) -> np.ndarray:
    n = 2**zoom
    return np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * rows / n))))


def _rows_of_lats(lats: np.ndarray, zoom: int) -> np.ndarray:
    n = 2**zoom
    lat_r = np.radians(np.clip(lats, -MAX_LATITUDE, MAX_LATITUDE))
    return (1 - np.log(np.tan(lat_r) + 1 / np.cos(lat_r)) / np.pi) / 2 * n


def _snapped_tile_space(lonlat: np.ndarray, zoom: int) -> np.ndarray:
    """Coordinates to (tile-x, latitude), each snapped onto a tile edge when within SNAP_TILES."""
    n = 2**zoom
    x = (lonlat[:, 0] + 180.0) / 360.0 * n
    x_round = np.round(x)
    x = np.where(np.abs(x - x_round) < SNAP_TILES, x_round, x)
    rows = _rows_of_lats(lonlat[:, 1], zoom)
    rows_round = np.round(rows)
    lat = np.where(np.abs(rows - rows_round) < SNAP_TILES, _row_edge_lats(rows_round, zoom), lonlat[:, 1])
    return np.column_stack([x, lat])


def snap_to_grid(geom: shapely.Geometry, zoom: int) -> shapely.Geometry:
    """The AOI as the cover sees it: lon/lat with near-edge coordinates snapped onto tile edges."""
    n = 2**zoom

    def transform(coords: np.ndarray) -> np.ndarray:
        snapped = _snapped_tile_space(coords, zoom)
        return np.column_stack([snapped[:, 0] / n * 360.0 - 180.0, snapped[:, 1]])

    return shapely.transform(geom, transform)


def _segments(geom: shapely.Geometry, zoom: int) -> np.ndarray:
    """All boundary segments in snapped tile space as an (n, 4) array of x0, lat0, x1, lat1."""
    rings = shapely.get_rings(shapely.get_parts(geom))
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    if len(coords) == 0:
        return np.empty((0, 4))
    coords = _snapped_tile_space(coords, zoom)
    same_ring = ring_of[:-1] == ring_of[1:]  # consecutive points of one ring form a segment
    return np.column_stack([coords[:-1][same_ring], coords[1:][same_ring]])


def _slab_trapezoids(seg: np.ndarray, zoom: int):
    """(slab bottom lat, slab top lat, left x bottom/top, right x bottom/top) of every trapezoid."""
    # Horizontal edges bound slabs but never cross one; drop them.
    seg = seg[seg[:, 1] != seg[:, 3]]
    lat_lo = np.minimum(seg[:, 1], seg[:, 3])
    lat_hi = np.maximum(seg[:, 1], seg[:, 3])
    n = 2**zoom
    row_top = int(np.floor(_rows_of_lats(np.array([lat_hi.max()]), zoom)[0]))
    row_bottom = int(np.floor(_rows_of_lats(np.array([lat_lo.min()]), zoom)[0]))
    inner_edges = _row_edge_lats(np.arange(max(row_top + 1, 0), min(row_bottom, n - 1) + 1, dtype=float), zoom)
    # Start latitudes are every vertex latitude: an edge's end starts the next edge, or a run of
    # horizontal edges at that same latitude which the next non-horizontal edge starts from.
    events = np.sort(np.concatenate([seg[:, 1], inner_edges]))
    events = events[np.concatenate([[True], events[1:] != events[:-1]])]  # ascending, unique

    first = np.searchsorted(events, lat_lo)  # exact: every endpoint is itself an event
    last = np.searchsorted(events, lat_hi)
    counts = last - first
    edge = np.repeat(np.arange(len(seg)), counts)
    slab = first[edge] + (np.arange(len(edge)) - np.repeat(np.cumsum(counts) - counts, counts))

    s = seg[edge]
    bottom, top = events[slab], events[slab + 1]
    slope = (s[:, 2] - s[:, 0]) / (s[:, 3] - s[:, 1])  # dx/dlat, finite: no horizontal edges
    x_bottom = s[:, 0] + (bottom - s[:, 1]) * slope
    x_top = s[:, 0] + (top - s[:, 1]) * slope
    # Sort each slab's edges by x at the slab's middle; consecutive pairs bound the inside.
    order = np.lexsort((x_bottom + x_top, slab))
    slab, x_bottom, x_top = slab[order], x_bottom[order], x_top[order]
    left, right = slice(0, None, 2), slice(1, None, 2)
    return events[slab[left]], events[slab[left] + 1], x_bottom[left], x_top[left], x_bottom[right], x_top[right]


def _merge_runs(rows: np.ndarray, starts: np.ndarray, stops: np.ndarray, zoom: int) -> np.ndarray:
    """Union of [start, stop) runs per row, touching runs joined, as sorted (row, start, stop)."""
    if len(rows) == 0:
        return np.empty((0, 3), dtype=np.int64)
    width = 2**zoom + 2  # rows laid end to end so one running maximum works across all rows
    g_start = rows * width + starts
    g_stop = rows * width + stops
    order = np.argsort(g_start, kind="stable")
    g_start, g_stop = g_start[order], g_stop[order]
    reach = np.maximum.accumulate(g_stop)
    new_run = np.ones(len(g_start), bool)
    new_run[1:] = g_start[1:] > reach[:-1]
    out_start = g_start[new_run]
    out_stop = np.maximum.reduceat(g_stop, np.flatnonzero(new_run))
    out_row = out_start // width
    return np.column_stack([out_row, out_start - out_row * width, out_stop - out_row * width]).astype(np.int64)


def tile_runs(geom: shapely.Geometry, zoom: int = ZOOM) -> np.ndarray:
    """The cover of a lon/lat (Multi)Polygon as an (n, 3) int64 array of (y, x_start, x_stop).

    Runs are half-open in x, sorted by row then x, and never overlap or touch within a row.
    """
    segments = _segments(geom, zoom)
    if len(segments) == 0 or not (segments[:, 1] != segments[:, 3]).any():
        return np.empty((0, 3), dtype=np.int64)
    bottom, top, lb, lt, rb, rt = _slab_trapezoids(segments, zoom)
    # Zero-area trapezoids (left and right edges coincide, as in a spike) have no interior.
    solid = (rb - lb) + (rt - lt) > 2 * MIN_WIDTH_TILES
    bottom, top, lb, lt, rb, rt = bottom[solid], top[solid], lb[solid], lt[solid], rb[solid], rt[solid]
    n = 2**zoom
    rows = np.floor(_rows_of_lats((bottom + top) / 2, zoom)).astype(np.int64)
    starts = np.clip(np.floor(np.minimum(lb, lt)), 0, n).astype(np.int64)
    stops = np.clip(np.ceil(np.maximum(rb, rt)), 0, n).astype(np.int64)
    keep = stops > starts
    return _merge_runs(rows[keep], starts[keep], stops[keep], zoom)


def count_tiles(runs: np.ndarray) -> int:
    return int((runs[:, 2] - runs[:, 1]).sum()) if len(runs) else 0


def iter_tiles(runs: np.ndarray, zoom: int = ZOOM):
    """Yield (x, y, z) for every tile of the runs, row by row."""
    for y, x0, x1 in runs.tolist():
        for x in range(x0, x1):
            yield x, y, zoom


def reference_cover(geom: shapely.Geometry, zoom: int) -> set[tuple[int, int, int]]:
    """Brute force: every tile in the bounding box whose square overlaps the AOI with area > 0.

    Applies the same edge snapping as ``tile_runs``. Slow; for tests and benchmarks only.
    """
    import mercantile

    geom = snap_to_grid(geom, zoom)
    west, south, east, north = geom.bounds
    out = set()
    for t in mercantile.tiles(west, south, east, north, zooms=zoom):
        b = mercantile.bounds(t)
        tile = shapely.box(b.west, b.south, b.east, b.north)
        # "Area > 0" up to floating-point noise of the intersection itself.
        if tile.intersection(geom).area > 1e-15 * tile.area:
            out.add((t.x, t.y, t.z))
    return out


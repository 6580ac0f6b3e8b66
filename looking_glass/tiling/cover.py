"""Tile cover: which tiles of a zoom level an AOI covers, as runs of consecutive tiles per row.

Semantics: a tile is in the cover if and only if the interior of the tile and the interior of the
AOI intersect (a tile that only touches the AOI along an edge or at a corner is out). The AOI's
edges are straight lines in longitude/latitude, as GeoJSON (RFC 7946) says.

Method: boundary tiles plus centre-inside tiles, exact and vectorised, with work proportional to
the boundary (vertices and the rows it crosses) and the number of output runs, never to the
bounding box, the number of tiles, or vertices times rows.
1. Work in "tile-x / latitude" space: x is longitude scaled to tile units (an affine map, so edges
   stay straight) and y stays latitude; tile rows are horizontal bands between row-edge latitudes.
2. Boundary tiles: an AOI edge that passes through a tile's open interior puts the tile in the
   cover (the AOI is valid, so it is the closure of its interior and interior points lie next to
   every boundary point). Each edge is clipped to each row band it crosses; the open x-range
   (a, b) of the clipped piece meets the columns [floor(a), ceil(b)).
3. Every other tile lies wholly inside or wholly outside the AOI, so its centre decides. One
   scanline through each row's centre latitude (the half-open crossing rule, pairs of crossings
   bound the inside) gives the columns whose centres are inside.
4. The cover is the union of both, merged into runs per row.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely

from looking_glass.grid import ZOOM, col_of_lon, lat_of_row_edge, lon_of_col, row_of_lat

# Coordinates within this many tiles of a tile edge are snapped onto it, so an AOI drawn exactly
# on tile edges (e.g. from mercantile.bounds) does not pick up a neighbour through rounding.
SNAP_TILES = 1e-9


def _snapped_tile_space(lonlat: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates to tile-x, latitude and tile-row position, each snapped onto a tile edge when
    within SNAP_TILES (then the row position is exactly an integer)."""
    x = col_of_lon(lonlat[:, 0], zoom)
    x_round = np.round(x)
    snap_x = np.abs(x - x_round) < SNAP_TILES
    x[snap_x] = x_round[snap_x]
    lat = lonlat[:, 1].copy()
    rows = row_of_lat(lat, zoom)
    rows_round = np.round(rows)
    snap = np.abs(rows - rows_round) < SNAP_TILES
    rows[snap] = rows_round[snap]
    lat[snap] = lat_of_row_edge(rows_round[snap], zoom)
    return x, lat, rows


def snap_to_grid(geom: shapely.Geometry, zoom: int) -> shapely.Geometry:
    """The AOI as the cover sees it: lon/lat with near-edge coordinates snapped onto tile edges."""

    def transform(coords: np.ndarray) -> np.ndarray:
        x, lat, _ = _snapped_tile_space(coords, zoom)
        return np.column_stack([lon_of_col(x, zoom), lat])

    return shapely.transform(geom, transform)


class _Segments:
    """The AOI's boundary edges in snapped tile space, each as its north and south end:
    tile-x, latitude and tile-row position (rows grow southwards)."""

    def __init__(self, geom: shapely.Geometry, zoom: int):
        rings = shapely.get_rings(shapely.get_parts(geom))
        coords, ring_of = shapely.get_coordinates(rings, return_index=True)
        x, lat, row = _snapped_tile_space(coords, zoom)
        start = np.flatnonzero(ring_of[:-1] == ring_of[1:])  # consecutive points of a ring
        end = start + 1
        north = np.where(row[start] <= row[end], start, end)
        south = start + end - north
        self.x_n, self.lat_n, self.row_n = x[north], lat[north], row[north]
        self.x_s, self.lat_s, self.row_s = x[south], lat[south], row[south]
        self.horizontal = self.lat_n == self.lat_s
        dlat = np.where(self.horizontal, 1.0, self.lat_s - self.lat_n)
        self.slope = np.where(self.horizontal, 0.0, (self.x_s - self.x_n) / dlat)

    def __len__(self) -> int:
        return len(self.x_n)

    def x_at(self, edge: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """x of each edge at a latitude (on its line; horizontal edges give their north end)."""
        return self.x_n[edge] + (lat - self.lat_n[edge]) * self.slope[edge]


class _RowLatitudes:
    """Edge and centre latitudes of the tile rows first..last+1, computed once per cover."""

    def __init__(self, first: int, last: int, zoom: int):
        self.first = first
        self.edge = lat_of_row_edge(np.arange(first, last + 2, dtype=float), zoom)
        self.centre = lat_of_row_edge(np.arange(first, last + 1, dtype=float) + 0.5, zoom)


def _explode(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(item index, row) for every row first[i]..last[i] of every item i, without a Python loop."""
    counts = np.maximum(last - first + 1, 0)
    item = np.repeat(np.arange(len(first)), counts)
    offset = np.arange(len(item)) - np.repeat(np.cumsum(counts) - counts, counts)
    return item, first[item] + offset


def _boundary_runs(seg: _Segments, rows: _RowLatitudes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, stop) of the tiles whose open interior an AOI edge passes through."""
    edge, row = _explode(np.floor(seg.row_n).astype(np.int64), np.floor(seg.row_s).astype(np.int64))
    row_n, row_s = seg.row_n[edge], seg.row_s[edge]
    # Each edge clipped to its row band: its own end where that lies in the band, else the band's
    # edge latitude (exactly the value snapped vertices got).
    clip_n = row_n < row
    clip_s = row_s > row + 1
    x_n = np.where(clip_n, seg.x_at(edge, rows.edge[row - rows.first]), seg.x_n[edge])
    x_s = np.where(clip_s, seg.x_at(edge, rows.edge[row - rows.first + 1]), seg.x_s[edge])
    # A piece only touching its band (zero height, or a horizontal edge on a row edge) crosses
    # no tile interior; a horizontal edge strictly inside a band does.
    piece_n = np.maximum(row_n, row)
    piece_s = np.minimum(row_s, row + 1)
    horizontal = seg.horizontal[edge]
    inside_band = np.where(horizontal, (row_n > row) & (row_n < row + 1), piece_s > piece_n)
    # The open x-range (a, b) meets columns [floor(a), ceil(b)); a vertical piece (a == b) meets
    # one column unless it runs along a column edge.
    a, b = np.minimum(x_n, x_s), np.maximum(x_n, x_s)
    start = np.floor(a)
    stop = np.where(b > a, np.ceil(b), np.where(a == start, start, start + 1))
    keep = inside_band & (stop > start)
    return row[keep], start[keep].astype(np.int64), stop[keep].astype(np.int64)


def _centre_runs(seg: _Segments, rows: _RowLatitudes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, stop) of the tiles whose centre is inside the AOI: one scanline per row."""
    # Half-open rule on the row-centre scanline r + 0.5: an edge crosses it iff
    # row_n < r + 0.5 <= row_s, so a vertex on the scanline counts once and horizontal edges never.
    first = np.floor(seg.row_n - 0.5).astype(np.int64) + 1
    last = np.floor(seg.row_s - 0.5).astype(np.int64)
    edge, row = _explode(first, last)
    x = seg.x_at(edge, rows.centre[row - rows.first])
    order = _by_row_then_x(row - rows.first, x)
    row, x = row[order], x[order]
    # Consecutive pairs of crossings bound the inside (even-odd rule: holes and parts included);
    # column c is inside iff its centre c + 0.5 lies between them.
    row, x_in, x_out = row[0::2], x[0::2], x[1::2]
    start = np.ceil(x_in - 0.5).astype(np.int64)
    stop = np.floor(x_out - 0.5).astype(np.int64) + 1
    return row, start, stop


def _by_row_then_x(offset: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The order of crossings by row (``offset``: rows from the first, >= 0), then x: as
    ``np.lexsort((x, offset))``, in a third of its time: x sorted first, then a stable sort of
    the row offsets, a radix sort when they fit in 16 bits (equal x values may swap, which
    changes no pair of crossings)."""
    by_x = np.argsort(x)
    offset = offset[by_x]
    if len(offset) and offset.max() < 2**16:
        offset = offset.astype(np.uint16)
    return by_x[np.argsort(offset, kind="stable")]


def _merge_runs(rows: np.ndarray, starts: np.ndarray, stops: np.ndarray, zoom: int) -> np.ndarray:
    """Union of [start, stop) runs per row, touching runs joined, as sorted (row, start, stop)."""
    if len(rows) == 0:
        return np.empty((0, 3), dtype=np.int64)
    width = 2**zoom + 2  # rows laid end to end so one running maximum works across all rows
    g_start = rows * width + starts
    g_stop = rows * width + stops
    order = np.argsort(g_start)  # runs with the same start may come in any order: one reduceat takes them
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
    seg = _Segments(geom, zoom)
    if len(seg) == 0 or seg.horizontal.all():
        return np.empty((0, 3), dtype=np.int64)
    n = 2**zoom
    rows = _RowLatitudes(int(np.floor(seg.row_n.min())), int(np.floor(seg.row_s.max())), zoom)
    row, start, stop = (np.concatenate(parts) for parts in zip(_boundary_runs(seg, rows), _centre_runs(seg, rows)))
    np.clip(start, 0, n, out=start)
    np.clip(stop, 0, n, out=stop)
    keep = (stop > start) & (row >= 0) & (row < n)
    return _merge_runs(row[keep], start[keep], stop[keep], zoom)


def count_tiles(runs: np.ndarray) -> int:
    """Number of tiles in the runs ((n, 3) rows of y, x_start, x_stop, half-open)."""
    return int((runs[:, 2] - runs[:, 1]).sum()) if len(runs) else 0


def iter_tiles(runs: np.ndarray, zoom: int = ZOOM):
    """Yield (x, y, z) for every tile of the runs, row by row."""
    for y, x0, x1 in runs.tolist():
        for x in range(x0, x1):
            yield x, y, zoom


def reference_cover(
    geom: shapely.Geometry, zoom: int, rows: Iterable[int] | None = None
) -> set[tuple[int, int, int]]:
    """Brute force: every tile in the bounding box whose square overlaps the AOI with area > 0.

    Applies the same edge snapping as ``tile_runs``; ``rows`` limits it to some tile rows (to
    check a sample of a huge cover). Slow; for tests and benchmarks only.
    """
    geom = snap_to_grid(geom, zoom)
    shapely.prepare(geom)
    west, south, east, north = geom.bounds
    n = 2**zoom
    # Candidate columns and rows with a margin of one: a superset of the bounding box's tiles.
    x_first = max(int(np.floor(col_of_lon(west, zoom))) - 1, 0)
    x_last = min(int(np.floor(col_of_lon(east, zoom))) + 1, n - 1)
    y_first = max(int(np.floor(row_of_lat(np.array([north]), zoom)[0])) - 1, 0)
    y_last = min(int(np.floor(row_of_lat(np.array([south]), zoom)[0])) + 1, n - 1)
    xs = np.arange(x_first, x_last + 1)
    lon_w, lon_e = lon_of_col(xs, zoom), lon_of_col(xs + 1, zoom)
    out = set()
    for y in range(y_first, y_last + 1) if rows is None else sorted(rows):
        if not y_first <= y <= y_last:
            continue
        # Tile edges from the same formulas as the snapping (mercantile's differ in the last
        # bits), so a polygon edge on a tile edge touches it exactly.
        lat_top, lat_bottom = lat_of_row_edge(np.array([y, y + 1.0]), zoom)
        # The AOI's part in this row first: per-tile overlays then stay small for AOIs with
        # many vertices (a tile lies inside its row, so the overlap areas are the same).
        part = shapely.intersection(geom, shapely.box(lon_w[0], lat_bottom, lon_e[-1], lat_top))
        if part.is_empty:
            continue
        boxes = shapely.box(lon_w, lat_bottom, lon_e, lat_top)
        near = shapely.intersects(part, boxes)
        # Exactly "area > 0": both sides share the snapped edge values, so touching is exact.
        overlap = shapely.area(shapely.intersection(part, boxes[near])) > 0
        out.update((int(x), y, zoom) for x in xs[near][overlap])
    return out

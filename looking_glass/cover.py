"""Tile cover: which tiles of a zoom level an AOI covers, as runs of consecutive tiles per row.

Semantics: a tile is in the cover if and only if the interior of the tile and the interior of the
AOI intersect (a tile that only touches the AOI along an edge or at a corner is out). The AOI's
edges are straight lines in longitude/latitude, as GeoJSON (RFC 7946) says.

Method, so that work follows the AOI's boundary and not its bounding box:
1. Work in "tile-x / latitude" space: x is longitude scaled to tile units (an affine map, so edges
   stay straight), y stays latitude and row edges are the rows' latitudes.
2. Every boundary segment marks the tiles of each row it passes through as *candidates*.
3. Candidates get an exact interior-intersection test against the AOI clipped to their row.
4. A gap between candidates has no boundary inside it, so it is all in or all out: one
   point-in-polygon test decides the whole run.
"""

from __future__ import annotations

import numpy as np
import shapely

from .grid import MAX_LATITUDE, ZOOM

# Coordinates within this many tiles of a tile edge are snapped onto it, so an AOI drawn exactly
# on tile edges (e.g. from mercantile.bounds) does not pick up a neighbour through rounding.
SNAP_TILES = 1e-9
# Candidate marking is widened by this much so rounding can only add candidates, never drop one.
MARK_EPS = 1e-7


def _row_edge_lats(rows: np.ndarray, zoom: int) -> np.ndarray:
    n = 2**zoom
    return np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * rows / n))))


def _rows_of_lats(lats: np.ndarray, zoom: int) -> np.ndarray:
    n = 2**zoom
    lat_r = np.radians(np.clip(lats, -MAX_LATITUDE, MAX_LATITUDE))
    return (1 - np.log(np.tan(lat_r) + 1 / np.cos(lat_r)) / np.pi) / 2 * n


def snap_to_grid(geom: shapely.Geometry, zoom: int) -> shapely.Geometry:
    """Move coordinates within ``SNAP_TILES`` of a tile edge exactly onto it (lon/lat kept)."""
    n = 2**zoom

    def transform(coords: np.ndarray) -> np.ndarray:
        x = (coords[:, 0] + 180.0) / 360.0 * n
        x_round = np.round(x)
        lon = np.where(np.abs(x - x_round) < SNAP_TILES, x_round / n * 360.0 - 180.0, coords[:, 0])
        rows = _rows_of_lats(coords[:, 1], zoom)
        rows_round = np.round(rows)
        on_edge = np.abs(rows - rows_round) < SNAP_TILES
        lat = np.where(on_edge, _row_edge_lats(rows_round, zoom), coords[:, 1])
        return np.column_stack([lon, lat])

    return shapely.transform(geom, transform)


def _to_tile_space(geom: shapely.Geometry, zoom: int) -> shapely.Geometry:
    """Longitude to tile-x units (snapped edges land on exact integers); latitude unchanged."""
    n = 2**zoom

    def transform(coords: np.ndarray) -> np.ndarray:
        x = (coords[:, 0] + 180.0) / 360.0 * n
        x_round = np.round(x)
        x = np.where(np.abs(x - x_round) < SNAP_TILES, x_round, x)
        return np.column_stack([x, coords[:, 1]])

    return shapely.transform(snap_to_grid(geom, zoom), transform)


def _segments(geom: shapely.Geometry) -> np.ndarray:
    """All boundary segments as an (n, 4) array of x0, lat0, x1, lat1."""
    rings = shapely.get_rings(shapely.get_parts(geom))
    pieces = []
    for ring in rings:
        c = shapely.get_coordinates(ring)
        pieces.append(np.column_stack([c[:-1], c[1:]]))
    return np.concatenate(pieces) if pieces else np.empty((0, 4))


def _candidate_intervals(seg: np.ndarray, zoom: int) -> np.ndarray:
    """(row, col_first, col_last) for every row each segment passes through."""
    n = 2**zoom
    lat_hi = np.maximum(seg[:, 1], seg[:, 3])
    lat_lo = np.minimum(seg[:, 1], seg[:, 3])
    row_first = np.floor(_rows_of_lats(lat_hi, zoom) - MARK_EPS).astype(np.int64)
    row_last = np.floor(_rows_of_lats(lat_lo, zoom) + MARK_EPS).astype(np.int64)
    row_first = np.clip(row_first, 0, n - 1)
    row_last = np.clip(row_last, 0, n - 1)
    counts = row_last - row_first + 1
    idx = np.repeat(np.arange(len(seg)), counts)
    offsets = np.arange(len(idx)) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = row_first[idx] + offsets

    s = seg[idx]
    top = _row_edge_lats(rows.astype(float), zoom)
    bottom = _row_edge_lats(rows + 1.0, zoom)
    # Latitude span of the segment inside this row, then the x at both ends of that span.
    hi = np.minimum(np.maximum(s[:, 1], s[:, 3]), top)
    lo = np.maximum(np.minimum(s[:, 1], s[:, 3]), bottom)
    dlat = s[:, 3] - s[:, 1]
    flat = np.abs(dlat) < 1e-300
    safe = np.where(flat, 1.0, dlat)
    x_at_hi = np.where(flat, s[:, 0], s[:, 0] + (hi - s[:, 1]) / safe * (s[:, 2] - s[:, 0]))
    x_at_lo = np.where(flat, s[:, 2], s[:, 0] + (lo - s[:, 1]) / safe * (s[:, 2] - s[:, 0]))
    x_min = np.minimum(x_at_hi, x_at_lo)
    x_max = np.maximum(x_at_hi, x_at_lo)
    col_first = np.clip(np.floor(x_min - MARK_EPS), 0, n - 1).astype(np.int64)
    col_last = np.clip(np.floor(x_max + MARK_EPS), 0, n - 1).astype(np.int64)
    return np.column_stack([rows, col_first, col_last])


def _merge_intervals(iv: np.ndarray) -> np.ndarray:
    """Merge overlapping or adjacent (row, first, last) intervals within each row."""
    if len(iv) == 0:
        return iv
    iv = iv[np.lexsort((iv[:, 1], iv[:, 0]))]
    rows, first, last = iv[:, 0], iv[:, 1], iv[:, 2]
    # Running maximum of `last` within each row tells whether the next interval starts a new run.
    out = []
    cur_row, cur_first, cur_last = rows[0], first[0], last[0]
    for r, f, l in zip(rows[1:].tolist(), first[1:].tolist(), last[1:].tolist()):
        if r == cur_row and f <= cur_last + 1:
            if l > cur_last:
                cur_last = l
        else:
            out.append((cur_row, cur_first, cur_last))
            cur_row, cur_first, cur_last = r, f, l
    out.append((cur_row, cur_first, cur_last))
    return np.asarray(out, dtype=np.int64)


def _runs_from_flags(row: int, cols: np.ndarray, inside: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs (row, start, stop) of consecutive columns whose flag is set."""
    runs = []
    start = None
    prev = None
    for c, flag in zip(cols.tolist(), inside.tolist()):
        if flag and start is not None and c == prev + 1:
            prev = c
            continue
        if start is not None:
            runs.append((row, start, prev + 1))
            start = None
        if flag:
            start = prev = c
    if start is not None:
        runs.append((row, start, prev + 1))
    return runs


def tile_runs(geom: shapely.Geometry, zoom: int = ZOOM) -> np.ndarray:
    """The cover of a lon/lat (Multi)Polygon as an (n, 3) int64 array of (y, x_start, x_stop).

    Runs are half-open in x, sorted by row then x, and never overlap or touch within a row.
    """
    space = _to_tile_space(geom, zoom)
    shapely.prepare(space)
    segments = _segments(space)
    if len(segments) == 0:
        return np.empty((0, 3), dtype=np.int64)
    candidates = _merge_intervals(_candidate_intervals(segments, zoom))

    runs: list[tuple[int, int, int]] = []
    row_ids = candidates[:, 0]
    bounds = np.flatnonzero(np.diff(row_ids)) + 1
    for row_iv in np.split(candidates, bounds):
        row = int(row_iv[0, 0])
        top = float(_row_edge_lats(np.array([row], float), zoom)[0])
        bottom = float(_row_edge_lats(np.array([row + 1.0]), zoom)[0])
        band = space.intersection(shapely.box(-1, bottom, 2**zoom + 1, top))
        if band.is_empty:
            continue
        shapely.prepare(band)

        cols = np.concatenate([np.arange(f, l + 1) for _, f, l in row_iv])
        boxes = shapely.box(cols, bottom, cols + 1, top)
        # Interiors intersect: the DE-9IM interior/interior cell is non-empty (2 for areas).
        cand_in = shapely.relate_pattern(boxes, band, "2********")

        # Gaps between candidate intervals are uniform: test the centre of their first tile.
        gap_first = row_iv[:-1, 2] + 1
        gap_stop = row_iv[1:, 1]
        mid_lat = (top + bottom) / 2
        gap_in = (
            shapely.contains_xy(band, gap_first + 0.5, np.full(len(gap_first), mid_lat))
            if len(gap_first)
            else np.zeros(0, bool)
        )

        # Stitch candidates and inside gaps into maximal runs.
        row_runs = _runs_from_flags(row, cols, cand_in)
        for g0, g1, inside in zip(gap_first.tolist(), gap_stop.tolist(), gap_in.tolist()):
            if inside:
                row_runs.append((row, g0, g1))
        row_runs.sort(key=lambda r: r[1])
        merged: list[tuple[int, int, int]] = []
        for r in row_runs:
            if merged and merged[-1][2] == r[1]:
                merged[-1] = (row, merged[-1][1], r[2])
            else:
                merged.append(r)
        runs.extend(merged)

    return np.asarray(runs, dtype=np.int64).reshape(-1, 3)


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
        if shapely.box(b.west, b.south, b.east, b.north).intersection(geom).area > 0:
            out.add((t.x, t.y, t.z))
    return out


"""The mapping gap per tile: predicted buildings against the buildings already mapped.

For each zoom-``zoom`` tile (default zoom 18):

- ``predicted_area_m2`` / ``mapped_area_m2``: ground area of the union of the predicted / mapped
  polygons inside the tile (polygons are clipped to the tile, so a building across an edge is
  shared between its tiles by area);
- ``predicted_count`` / ``mapped_count``: buildings counted in the tile by the same rule as the
  stitcher's ``building_count``: the tile holding the polygon's centroid (its representative
  point when the centroid falls outside it);
- ``unmapped_area_m2``: predicted building area inside the tile not covered by any mapped
  building grown by ``tolerance_m`` (default 1 m: outlines traced from different imagery never
  coincide, and the slivers between a predicted and a mapped outline of one building are not a
  gap);
- ``completeness``: the share of the predicted building area that mapped buildings cover,
  ``1 - unmapped_area_m2 / predicted_area_m2`` (:func:`completeness`); 1.0 when nothing is
  predicted in the tile (nothing there is left to map);
- ``rank``: priority, 1 = the most unmapped area (ties: more predicted area, then quadkey).

Coarser tiles (:func:`gap_rollup`) sum the zoom-18 rows; user polygons (:func:`gap_within`, e.g.
Tasking Manager task squares) clip the buildings to each polygon (in the same world pixels, with
the same areas) and count each building in the polygon that holds its counting point.

Geometry is handled in world pixels (:mod:`.georef`), where a tile is an exact square; areas are
pixel areas times :func:`looking_glass.grid.pixel_area_m2` of the tile (relative error < 1e-5 at
zoom 18). Inputs are lon/lat (EPSG:4326) polygons, :class:`~.stitch.Building` records or
:class:`~.layers.PolygonLayer` objects in any CRS. Memory is that of the two inputs: a caller
with a country-sized job runs it a band of tiles at a time (``tiles``, ``ranked=False``,
:func:`rollup_add`, :func:`within_parts` with ``sums``) with the reference of that band
(:class:`~.reference.MappedReference`), as ``looking_glass.results.gap`` does.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely

from looking_glass.grid import TILE_SIZE, ZOOM, pixel_area_m2, quadkey, tile_from_quadkey, tile_polygon
from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.georef import area_m2, m_per_px, to_world_px
from looking_glass.outlines.layers import PolygonLayer, read_polygons

__all__ = ["COMPLETENESS_MEANS", "GAP_FIELDS", "GAP_VALUES", "compare_files", "completeness", "gap_feature_collection", "gap_rollup", "gap_summary",
           "gap_within", "mapping_gap", "rank_rows", "region_counts", "rollup_add", "rollup_rows", "unmapped_buildings", "within_parts",
           "within_regions", "within_rows", "write_gap_csv"]

GAP_VALUES = ("predicted_area_m2", "predicted_count", "mapped_area_m2", "mapped_count", "unmapped_area_m2",
              "completeness", "rank")
GAP_FIELDS = ("z", "x", "y", "quadkey", *GAP_VALUES)
# what :func:`completeness` is, in the words every output that shows it uses
COMPLETENESS_MEANS = "share of the predicted building area covered by mapped buildings: 1 - unmapped / predicted"


def _lonlat_array(items) -> np.ndarray:
    if isinstance(items, PolygonLayer):
        return items.lonlat()
    geoms = [getattr(g, "polygon", g) for g in items]
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    if len(arr) and not all(isinstance(g, shapely.Geometry) for g in arr):
        raise OutlinesError("buildings must be shapely geometries, Building records or a PolygonLayer")
    return arr


def _count_points(geoms_px: np.ndarray) -> np.ndarray:
    """(N, 2) world-pixel points that decide each polygon's counting tile."""
    if len(geoms_px) == 0:
        return np.zeros((0, 2))
    cent = shapely.centroid(geoms_px)
    inside = shapely.contains(geoms_px, cent)
    pts = np.where(inside, cent, shapely.point_on_surface(geoms_px))
    return np.column_stack([shapely.get_x(pts), shapely.get_y(pts)])


def _tiles_touched(geoms_px: np.ndarray, zoom: int, size: int) -> list[tuple[int, int, int]]:
    out = set()
    tree = shapely.STRtree(geoms_px)
    for w, s, e, n in shapely.bounds(geoms_px):
        for ty in range(int(s // size), int(np.ceil(n / size))):
            for tx in range(int(w // size), int(np.ceil(e / size))):
                out.add((tx, ty))
    keep = []
    for tx, ty in sorted(out, key=lambda t: (t[1], t[0])):
        box = shapely.box(tx * size, ty * size, (tx + 1) * size, (ty + 1) * size)
        if len(tree.query(box, predicate="intersects")):
            keep.append((zoom, tx, ty))
    return keep


def _union_area(geoms: np.ndarray, box) -> tuple[float, object]:
    if len(geoms) == 0:
        return 0.0, None
    clipped = shapely.intersection(geoms, box)
    merged = shapely.union_all(clipped)
    return float(merged.area), merged


def mapping_gap(predicted, mapped, tiles: Iterable | None = None, zoom: int = ZOOM,
                tolerance_m: float = 1.0, ranked: bool = True) -> list[dict]:
    """Per-tile rows (dicts with :data:`GAP_FIELDS`, sorted by ``rank``) of the mapping gap of
    ``predicted`` against ``mapped`` (see the module docstring). ``ranked=False``: the rows in
    tile order without ``rank``, for a caller that ranks the rows of many calls once.

    ``tiles``: the (z, x, y) tiles to report, all at ``zoom`` (e.g. the job's tiles); by default
    every tile a predicted building touches. ``tolerance_m``: see ``unmapped_area_m2`` in the
    module docstring. Raises OutlinesError for a tile of another zoom or a negative tolerance.
    """
    if tolerance_m < 0:
        raise OutlinesError(f"tolerance_m must not be negative, got {tolerance_m}")
    size = TILE_SIZE
    pred = to_world_px(_lonlat_array(predicted), zoom, size)
    ref = to_world_px(_lonlat_array(mapped), zoom, size)
    if tiles is None:
        tiles = _tiles_touched(pred, zoom, size) if len(pred) else []
    tiles = [tuple(int(v) for v in t) for t in tiles]
    if any(t[0] != zoom for t in tiles):
        raise OutlinesError(f"all tiles must be at zoom {zoom}")
    pred_tree, ref_tree = shapely.STRtree(pred), shapely.STRtree(ref)
    pred_counts = _tile_counts(_count_points(pred), size)
    ref_counts = _tile_counts(_count_points(ref), size)
    rows = []
    for z, x, y in dict.fromkeys(tiles):
        box = shapely.box(x * size, y * size, (x + 1) * size, (y + 1) * size)
        p = pred[pred_tree.query(box, predicate="intersects")]
        r = ref[ref_tree.query(box, predicate="intersects")]
        p_area, p_union = _union_area(p, box)
        r_area, r_union = _union_area(r, box)
        if p_union is None:
            gap = 0.0
        elif r_union is None:
            gap = p_area
        else:
            k = pixel_area_m2(x, y, z)
            grown = shapely.buffer(r_union, tolerance_m / k**0.5, quad_segs=2) if tolerance_m > 0 else r_union
            gap = float(shapely.difference(p_union, grown).area)
        k = pixel_area_m2(x, y, z)
        rows.append({
            "z": z, "x": x, "y": y, "quadkey": quadkey(x, y, z),
            "predicted_area_m2": p_area * k, "predicted_count": pred_counts.get((x, y), 0),
            "mapped_area_m2": r_area * k, "mapped_count": ref_counts.get((x, y), 0),
            "unmapped_area_m2": gap * k, "completeness": completeness(p_area * k, gap * k),
        })
    return rank_rows(rows, "quadkey") if ranked else rows


def rank_rows(rows: list[dict], key: str) -> list[dict]:
    """``rows`` sorted by priority (most unmapped area first; ties: more predicted area, then
    ``key``) with ``rank`` 1, 2, ..."""
    rows.sort(key=lambda r: (-r["unmapped_area_m2"], -r["predicted_area_m2"], r[key]))
    for i, row in enumerate(rows, start=1):
        row["rank"] = i
    return rows


def completeness(predicted_area_m2: float, unmapped_area_m2: float) -> float:
    """The share (0..1) of the predicted building area that mapped buildings cover:
    ``1 - unmapped / predicted`` (the predicted area overlapped by the mapped buildings, grown by
    the tolerance, over the predicted area); 1.0 when nothing is predicted. The one definition
    of every row, total, file and map of the mapping gap. Mapped buildings where nothing is
    predicted do not raise it: a mapped area larger than the predicted one says nothing about
    how much of what is there is mapped."""
    if predicted_area_m2 <= 0:
        return 1.0
    return min(1.0, max(0.0, 1.0 - unmapped_area_m2 / predicted_area_m2))  # clamp float round-off


_SUMS = ("predicted_area_m2", "predicted_count", "mapped_area_m2", "mapped_count", "unmapped_area_m2")


def rollup_add(groups: dict[str, dict], rows: Iterable[dict], zoom: int) -> dict[str, dict]:
    """Add per-tile rows (:func:`mapping_gap`) into ``groups`` (quadkey prefix of length ``zoom``
    -> summed values), in place; returns ``groups``. Rows may come in any number of calls."""
    for r in rows:
        g = groups.setdefault(r["quadkey"][:zoom], dict.fromkeys(_SUMS, 0))
        for k in _SUMS:
            g[k] += r[k]
    return groups


def rollup_rows(groups: dict[str, dict]) -> list[dict]:
    """The ranked rows of :func:`rollup_add`'s groups: one per zoom-``zoom`` tile, completeness
    recomputed from the sums."""
    out = []
    for qk, g in groups.items():
        x, y, z = tile_from_quadkey(qk) if qk else (0, 0, 0)
        out.append({"z": z, "x": x, "y": y, "quadkey": qk, **g,
                    "completeness": completeness(g["predicted_area_m2"], g["unmapped_area_m2"])})
    return rank_rows(out, "quadkey")


def gap_rollup(rows: list[dict], zoom: int) -> list[dict]:
    """Per-tile rows (:func:`mapping_gap`) summed per zoom-``zoom`` tile (quadkey prefix):
    areas and counts add up (each building is counted in one tile), completeness is recomputed
    from the sums and rows are ranked again. Raises OutlinesError for a zoom finer than the rows'."""
    if rows and not 0 <= zoom <= min(len(r["quadkey"]) for r in rows):
        raise OutlinesError(f"zoom {zoom}: roll up to a zoom between 0 and {len(rows[0]['quadkey'])}")
    return rollup_rows(rollup_add({}, rows, zoom))


def within_regions(polygons: list[dict]) -> np.ndarray:
    """The ``polygons``' geometries (lon/lat, edges straight in lon/lat) as prepared zoom-18 world
    pixel polygons, the form :func:`within_parts` takes."""
    regions = np.empty(len(polygons), dtype=object)
    regions[:] = [shapely.segmentize(p["geometry"], 360.0 / 2**ZOOM) for p in polygons]
    regions = to_world_px(regions, ZOOM, TILE_SIZE)
    shapely.prepare(regions)
    return regions


def within_parts(predicted, mapped, regions: np.ndarray, tiles: Iterable, tolerance_m: float = 1.0,
                 sums: dict[int, dict] | None = None) -> dict[int, dict]:
    """The gap of each region (:func:`within_regions`) inside the zoom-18 ``tiles``, added into
    ``sums`` (region index -> summed values, in place; returned): per tile the region's part of
    it is a cell, compared as a tile is (buildings clipped to it, unmapped area against the mapped
    buildings in it grown by ``tolerance_m``), areas in m2 at each part's latitude; a building
    counts in a region when its counting point is in the region and in one of ``tiles``. Calls on
    disjoint sets of tiles add up to the call on their union."""
    sums = {} if sums is None else sums
    tiles = [tuple(int(v) for v in t) for t in tiles]
    if len(regions) == 0 or not tiles:
        return sums
    size = TILE_SIZE
    pred = to_world_px(_lonlat_array(predicted), ZOOM, size)
    ref = to_world_px(_lonlat_array(mapped), ZOOM, size)
    region_tree, pred_tree, ref_tree = shapely.STRtree(regions), shapely.STRtree(pred), shapely.STRtree(ref)

    def ground(geom) -> float:
        return 0.0 if geom is None or geom.is_empty else float(np.sum(area_m2(shapely.get_parts(geom), ZOOM, size)))

    def add(i: int, key: str, value) -> None:
        sums.setdefault(int(i), dict.fromkeys(_SUMS, 0))[key] += value

    for _, x, y in tiles:
        box = shapely.box(x * size, y * size, (x + 1) * size, (y + 1) * size)
        for i in region_tree.query(box, predicate="intersects"):
            cell = shapely.intersection(regions[i], box)
            if cell.is_empty:
                continue
            _, p_union = _union_area(pred[pred_tree.query(cell, predicate="intersects")], cell)
            _, r_union = _union_area(ref[ref_tree.query(cell, predicate="intersects")], cell)
            p_area, r_area = ground(p_union), ground(r_union)
            if p_union is None or r_union is None:
                gap = p_area
            else:
                grow = tolerance_m / float(m_per_px((y + 0.5) * size, ZOOM, size))
                gap = ground(shapely.difference(p_union, shapely.buffer(r_union, grow, quad_segs=2) if grow else r_union))
            add(i, "predicted_area_m2", p_area)
            add(i, "mapped_area_m2", r_area)
            add(i, "unmapped_area_m2", gap)
    held = {(x, y) for _, x, y in tiles}
    for geoms, key in ((pred, "predicted_count"), (ref, "mapped_count")):
        for i in _region_hits(geoms, region_tree, held, size):
            add(i, key, 1)
    return sums


def _region_hits(geoms_px: np.ndarray, region_tree, held: set, size: int) -> np.ndarray:
    """The region index of each (building, region) pair where the building's counting point
    (:func:`_count_points`) lies in the region and in one of the ``held`` (x, y) tiles."""
    pts = _count_points(geoms_px)
    here = np.array([(int(a), int(b)) in held for a, b in np.floor(pts / size)], dtype=bool)
    if not here.any():
        return np.zeros(0, dtype=np.int64)
    return region_tree.query(shapely.points(pts[here]), predicate="within")[1]


def region_counts(buildings, regions: np.ndarray, held: set[tuple[int, int]]) -> np.ndarray:
    """(len(regions),) int64: how many of ``buildings`` (lon/lat polygons or Building records)
    each region (:func:`within_regions`) holds, counting a building once per region that holds
    its counting point (centroid, or a point on its surface when the centroid is outside it),
    where that point is also in one of the zoom-18 tiles ``held`` ((x, y) pairs); the rule of
    :func:`within_parts`' ``predicted_count``. Calls on disjoint sets of buildings add up."""
    counts = np.zeros(len(regions), dtype=np.int64)
    geoms = to_world_px(_lonlat_array(buildings), ZOOM, TILE_SIZE)
    if len(regions) == 0 or len(geoms) == 0:
        return counts
    np.add.at(counts, _region_hits(geoms, shapely.STRtree(regions), held, TILE_SIZE), 1)
    return counts


def within_rows(polygons: list[dict], sums: dict[int, dict]) -> list[dict]:
    """Ranked rows (``name``, ``geometry`` and :data:`GAP_VALUES`) of :func:`within_parts`' sums,
    one per polygon (zeros for a polygon no tile reached)."""
    rows = []
    for i, poly in enumerate(polygons):
        g = sums.get(i, dict.fromkeys(_SUMS, 0))
        rows.append({"name": poly["name"], "geometry": poly["geometry"], **g,
                     "completeness": completeness(g["predicted_area_m2"], g["unmapped_area_m2"])})
    return rank_rows(rows, "name")


def gap_within(predicted, mapped, polygons: list[dict], tolerance_m: float = 1.0) -> list[dict]:
    """The mapping gap per user polygon: ``polygons`` are ``{"name", "geometry"}`` (lon/lat shapely
    polygons, e.g. Tasking Manager task squares, edges straight in lon/lat); each row has
    ``name``, ``geometry`` and :data:`GAP_VALUES`. Each polygon is compared tile by tile
    (:func:`within_parts` over every zoom-18 tile it touches): buildings clipped to it for areas,
    counted in the polygon holding their counting point, so a polygon that is exactly a tile gets
    that tile's numbers."""
    if tolerance_m < 0:
        raise OutlinesError(f"tolerance_m must not be negative, got {tolerance_m}")
    regions = within_regions(polygons)
    tiles = _tiles_touched(regions, ZOOM, TILE_SIZE) if len(regions) else []
    return within_rows(polygons, within_parts(predicted, mapped, regions, tiles, tolerance_m))


def unmapped_buildings(predicted, mapped) -> list:
    """The predicted buildings (items of ``predicted``, as given) that no mapped building
    touches: the map's "not yet mapped" layer."""
    pred_ll, ref_ll = _lonlat_array(predicted), _lonlat_array(mapped)
    items = list(predicted) if not isinstance(predicted, PolygonLayer) else list(pred_ll)
    if len(ref_ll) == 0:
        return items
    hit = shapely.STRtree(ref_ll).query(pred_ll, predicate="intersects")[0]
    touched = np.zeros(len(pred_ll), bool)
    touched[hit] = True
    return [b for b, t in zip(items, touched, strict=True) if not t]


def _tile_counts(points: np.ndarray, size: int) -> dict:
    if len(points) == 0:
        return {}
    keys, counts = np.unique(np.floor(points / size).astype(np.int64), axis=0, return_counts=True)
    return {(int(a), int(b)): int(c) for (a, b), c in zip(keys, counts, strict=True)}


def gap_summary(rows: list[dict]) -> dict:
    """Totals over per-tile rows: tiles, predicted/mapped/unmapped area (m2) and counts, and the
    overall :func:`completeness` (1 - unmapped / predicted area; 1.0 with nothing predicted)."""
    pa = sum(r["predicted_area_m2"] for r in rows)
    ma = sum(r["mapped_area_m2"] for r in rows)
    unmapped = sum(r["unmapped_area_m2"] for r in rows)
    return {
        "tiles": len(rows),
        "predicted_area_m2": pa,
        "predicted_count": sum(r["predicted_count"] for r in rows),
        "mapped_area_m2": ma,
        "mapped_count": sum(r["mapped_count"] for r in rows),
        "unmapped_area_m2": unmapped,
        "completeness": completeness(pa, unmapped),
    }


def compare_files(predicted_path, mapped_path, tiles: Iterable | None = None, zoom: int = ZOOM,
                  tolerance_m: float = 1.0) -> list[dict]:
    """:func:`mapping_gap` of two files (any format :func:`~.layers.read_polygons` reads, e.g. the
    job's buildings export and an ``.osm.pbf`` extract); the mapped file is read only within the
    bounds of the predictions (of ``tiles`` when given). Skipped features warn (see layers); a
    mapped file with features but no usable polygon raises OutlinesError."""
    predicted = read_polygons(predicted_path)
    pred_ll = predicted.lonlat()
    if tiles is not None:
        tiles = [tuple(int(v) for v in t) for t in tiles]
        boxes = [shapely.geometry.shape(tile_polygon(x, y, z)) for z, x, y in tiles]
        bbox = tuple(shapely.total_bounds(np.array(boxes, dtype=object))) if boxes else None
    else:
        bbox = tuple(shapely.total_bounds(pred_ll)) if len(pred_ll) else None
    if bbox is None:
        return []
    mapped = read_polygons(mapped_path, bbox=bbox).require_usable("nothing to compare against")
    return mapping_gap(pred_ll, mapped, tiles=tiles, zoom=zoom, tolerance_m=tolerance_m)


def gap_feature_collection(rows: list[dict]) -> dict:
    """The rows as a GeoJSON FeatureCollection of tile squares (lon/lat, RFC 7946), properties
    the row's fields: the map layer to colour by ``completeness``."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": r["quadkey"], "properties": dict(r), "geometry": tile_polygon(r["x"], r["y"], r["z"])}
        for r in rows]}


def write_gap_csv(rows: list[dict], path) -> int:
    """Write the rows as CSV with :data:`GAP_FIELDS` columns (areas in m2 to 0.01, completeness to
    1e-4); returns the row count."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(GAP_FIELDS)
        for r in rows:
            out = []
            for k in GAP_FIELDS:
                v = r[k]
                if k.endswith("_m2"):
                    v = f"{v:.2f}"
                elif k == "completeness":
                    v = f"{v:.4f}"
                out.append(v)
            w.writerow(out)
    return len(rows)

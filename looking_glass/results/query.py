"""Job results as people use them: per tile, rolled up to a coarser zoom, or per user polygon.

Everything reads the results table by key range (``store.query_tiles``), never a scan: tile items
sort by quadkey, so the tiles of any coarser tile are one contiguous key range, and a rollup to
zoom Z is a grouping of one ordered read by the first Z quadkey digits. Large jobs are read as a
few parallel key ranges.

Every row carries how complete it is: tiles with a result by status (done, failed, no imagery,
skipped). ``building_density`` is building area over the ground area of the row's *done* tiles
that holds imagery (each tile's area times its ``valid_fraction``; 1 when a result has none), so
a row with failed tiles, or edge tiles half outside an image, is not diluted by them.
``building_count`` is the sum of the workers' per-tile counts (a building cut by tile edges counted once, in the tile of its north-west piece:
``outlines.vectorize.building_count``), so a job's total is the number of buildings
``looking-glass export`` writes; None where a done tile has no count (a job run before counts
were stored).

Polygons (``--within``) get each tile's building area times the fraction of the tile inside.
Their ``building_count`` is a whole number of buildings, counted on the job's outlines by the
caller (:mod:`looking_glass.results.within_counts`), empty without them; their
``building_count_estimate`` is each tile's count times the fraction inside (a fraction; the only
figure for a job that stored no masks).
That fraction is measured on the web-mercator tile grid (tile x/y coordinates at zoom 18), the
plane in which ``grid.py`` computes tile areas: mercator's scale is uniform across one zoom-18
tile to 1e-5, so an area fraction there is the ground-area fraction. Polygon edges are straight
in lon/lat (as GeoJSON says, and as the tile cover treats them): they are densified to a tile
width before projection.
"""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import lru_cache

import mercantile
import numpy as np
import shapely
import shapely.geometry

from looking_glass.display import shown
from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.grid import (
    ZOOM,
    col_of_lon,
    row_of_lat,
    tile_area_m2,
    tile_bounds,
    tile_box,
    tile_center_lat,
    tile_from_quadkey,
    tile_polygon,
)
from looking_glass.imagery.status import TILE_DONE, TILE_STATUSES
from looking_glass.model.registry import run_label
from looking_glass.pipeline.store import ResultsStore, json_value

QUADKEY_DIGITS = "0123"
TILE_ATTRIBUTES = ("quadkey", "status", "building_area_m2", "building_count", "reason", "valid_fraction", "capture_date",
                   "model_id", "model_version")
STATUS_COLUMNS = tuple(f"tiles_{s}" for s in TILE_STATUSES)
FORMATS = ("table", "csv", "geojson")


class ResultsError(LookingGlassError, ValueError):
    """Bad input to a results query; the message is for the user."""

    exit_code = EXIT_BAD_INPUT


# ---- reading ------------------------------------------------------------------------------------
def _segments(first: str, last: str, extra_digits: int) -> list[tuple[str, str | None]]:
    """Split the quadkey range [first, last] into prefix ranges for parallel queries."""
    common = 0
    while common < min(len(first), len(last)) and first[common] == last[common]:
        common += 1
    base = first[:common]
    depth = min(extra_digits, ZOOM - common)
    if depth <= 0:
        return [(base, None)]
    prefixes = [""]
    for _ in range(depth):
        prefixes = [p + d for p in prefixes for d in QUADKEY_DIGITS]
    out = []
    for p in prefixes:
        seg = base + p
        if first[: len(seg)] <= seg <= last[: len(seg)]:
            out.append((seg, None))
    return out


def fetch_tiles(store: ResultsStore, job_id: str, prefix: str = "", threads: int = 4) -> list[dict]:
    """Every tile item of a job under a quadkey prefix (only the attributes results need),
    sorted by quadkey, read as up to 16 parallel key-range queries."""
    if threads <= 1:
        return list(store.query_tiles(job_id, prefix, attributes=TILE_ATTRIBUTES))
    extent = store.quadkey_extent(job_id)
    if extent is None:
        return []
    first, last = extent
    if prefix:
        if not (first[: len(prefix)] <= prefix <= last[: len(prefix)]):
            return []
        first = max(first, prefix)
        last = min(last, prefix + "3" * (ZOOM - len(prefix)))
    segments = _segments(first, last, 2)
    if len(segments) == 1:
        return list(store.query_tiles(job_id, segments[0][0], attributes=TILE_ATTRIBUTES))
    with ThreadPoolExecutor(min(threads, len(segments))) as pool:
        parts = pool.map(lambda seg: list(store.query_tiles(job_id, seg[0], attributes=TILE_ATTRIBUTES)), segments)
        return [item for part in parts for item in part]


# ---- arithmetic ---------------------------------------------------------------------------------
@lru_cache(maxsize=1 << 16)
def tile_ground_area_m2(y: int, zoom: int = ZOOM) -> float:
    """Ground area of tile row y (any x): :func:`looking_glass.grid.tile_area_m2`, cached."""
    return tile_area_m2(y, zoom)


def _new_row() -> dict:
    return {"tiles": 0, **{c: 0 for c in STATUS_COLUMNS}, "building_area_m2": Decimal(0), "building_count": 0,
            "done_area_m2": 0.0}


def _add(row: dict, item: dict, y: int, weight: float | None = None) -> None:
    row["tiles"] += 1
    row[f"tiles_{item['status']}"] += 1
    area = Decimal(item.get("building_area_m2", 0))
    if weight is None:
        row["building_area_m2"] += area
        w = 1.0
    else:
        row["building_area_m2"] += area * Decimal(repr(weight))
        w = weight
    # building_count: the worker's count of the tile (a done tile of a job run before counts
    # existed has none: the row's count is then unknown, None, rather than too low). Per polygon
    # a cut tile's count is weighted like its area.
    count = item.get("building_count")
    if row["building_count"] is not None:
        if count is None:
            row["building_count"] = None if item["status"] == TILE_DONE else row["building_count"]
        else:
            row["building_count"] += int(count) if weight is None else int(count) * weight
    if item["status"] == TILE_DONE:
        covered = item.get("valid_fraction")
        row["done_area_m2"] += w * (1.0 if covered is None else float(covered)) * tile_ground_area_m2(y)
    if item.get("capture_date"):
        row.setdefault("dates", set()).update(item["capture_date"].split(","))
    if item.get("model_id"):
        row.setdefault("models", set()).add(run_label(item["model_id"], item.get("model_version")))


def _finish(row: dict) -> dict:
    row["building_area_m2"] = row["building_area_m2"].quantize(Decimal("0.001"))
    if isinstance(row["building_count"], float):
        row["building_count"] = round(row["building_count"], 2)
    done = row["done_area_m2"]
    row["building_density"] = round(float(row["building_area_m2"]) / done, 9) if done > 0 else None
    row["done_area_m2"] = round(done, 3)
    row["_done_area_m2"] = done  # unrounded, for totals: every mode's totals then agree to the last digit
    # The capture dates of the row's imagery, newest first ("" where the source gives none).
    row["capture_date"] = ",".join(sorted(row.pop("dates", ()), reverse=True))
    # The model(s) that produced the row's results (ID/VERSION, as `jobs` names a registered one).
    row["model"] = ",".join(sorted(row.pop("models", ())))
    return row


def _xyz(quadkey: str) -> tuple[int, int, int]:
    if not quadkey:
        return 0, 0, 0
    return tile_from_quadkey(quadkey)


def per_tile_rows(items: list[dict]) -> list[dict]:
    """One row per tile item (sorted by quadkey) with its status counts, areas and density."""
    rows = []
    for item in sorted(items, key=lambda i: i["quadkey"]):
        x, y, z = _xyz(item["quadkey"])
        row = {"quadkey": item["quadkey"], "z": z, "x": x, "y": y, "status": item["status"], **_new_row()}
        _add(row, item, y)
        row = _finish(row)
        row["reason"] = item.get("reason") or ""
        row["valid_fraction"] = item.get("valid_fraction")
        rows.append(row)
    return rows


def rollup_rows(items: list[dict], zoom: int) -> list[dict]:
    """One row per zoom-``zoom`` tile: the sums of the zoom-18 tiles whose quadkey starts with its."""
    if not 0 <= zoom <= ZOOM:
        raise ResultsError(f"--zoom {zoom} must be between 0 and {ZOOM}")
    groups: dict[str, dict] = {}
    for item in items:
        qk = item["quadkey"]
        row = groups.get(qk[:zoom])
        if row is None:
            row = groups[qk[:zoom]] = _new_row()
        _add(row, item, _xyz(qk)[1])
    rows = []
    for key in sorted(groups):
        x, y, z = _xyz(key)
        rows.append({"quadkey": key, "z": z, "x": x, "y": y, **_finish(groups[key])})
    return rows


# ---- polygons -----------------------------------------------------------------------------------
def to_tile_plane(geometry, zoom: int = ZOOM):
    """lon/lat geometry to fractional tile x/y at ``zoom`` (edges straight in lon/lat), with
    :func:`looking_glass.grid.col_of_lon` / :func:`~looking_glass.grid.row_of_lat`."""
    dense = shapely.segmentize(geometry, 360.0 / 2**zoom)

    def project(coords):
        return np.column_stack([col_of_lon(coords[:, 0], zoom), row_of_lat(coords[:, 1], zoom)])

    return shapely.transform(dense, project)


def quadkey_prefix_of(geometries) -> str:
    """The longest quadkey prefix whose tile contains all the geometries: their key range."""
    w, s, e, n = shapely.union_all([g for g in geometries]).bounds
    lo = mercantile.quadkey(mercantile.tile(max(w, -180), min(n, 85.0511), ZOOM))
    hi = mercantile.quadkey(mercantile.tile(min(e, 179.9999999), max(s, -85.0511), ZOOM))
    common = 0
    while common < ZOOM and lo[common] == hi[common]:
        common += 1
    return lo[:common]


def within_rows(items: list[dict], polygons: list[dict], counts: list[int] | None = None) -> list[dict]:
    """One row per polygon: the tiles it cuts, building area weighted by the fraction inside;
    ``building_count`` from ``counts`` (one whole count per polygon, None: unknown) and
    ``building_count_estimate``, the tiles' counts weighted like their area."""
    xs = np.array([_xyz(i["quadkey"])[0] for i in items], dtype=np.int64)
    ys = np.array([_xyz(i["quadkey"])[1] for i in items], dtype=np.int64)
    rows = []
    for poly in polygons:
        row = {"name": poly["name"], **_new_row(), "tiles_partial": 0, "tile_fraction": 0.0}
        plane = to_tile_plane(poly["geometry"])
        x0, y0, x1, y1 = plane.bounds
        near = np.nonzero((xs + 1 > x0) & (xs < x1) & (ys + 1 > y0) & (ys < y1))[0]
        if len(near):
            boxes = shapely.box(xs[near], ys[near], xs[near] + 1, ys[near] + 1)
            shapely.prepare(plane)
            inside = shapely.contains(plane, boxes)
            fractions = np.where(inside, 1.0, 0.0)
            cut = np.nonzero(~inside & shapely.intersects(plane, boxes))[0]
            if len(cut):
                fractions[cut] = np.clip(shapely.area(shapely.intersection(boxes[cut], plane)), 0.0, 1.0)
            for k, frac in zip(near.tolist(), fractions.tolist()):
                if frac <= 1e-12:
                    continue
                weight = 1.0 if frac >= 1 - 1e-12 else frac
                _add(row, items[k], int(ys[k]), weight)
                row["tile_fraction"] += weight
                row["tiles_partial"] += weight < 1.0
        row["tile_fraction"] = round(row["tile_fraction"], 6)
        row["geometry"] = poly["geometry"]
        row = _finish(row)
        row["building_count_estimate"] = row["building_count"]
        row["building_count"] = None if counts is None else int(counts[len(rows)])
        rows.append(row)
    return rows


def totals(rows: list[dict], job: dict) -> dict:
    """Sums of the rows, and the job's own counters (kept as running totals in its record)."""
    out = {c: sum(r[c] for r in rows) for c in ("tiles", *STATUS_COLUMNS)}
    out["building_area_m2"] = sum((Decimal(r["building_area_m2"]) for r in rows), Decimal(0)).quantize(Decimal("0.001"))
    for column in ("building_count", "building_count_estimate"):
        if column == "building_count" or any(column in r for r in rows):
            counts = [r.get(column) for r in rows]
            out[column] = None if None in counts else round(sum(counts), 2)
    done = sum(r.get("_done_area_m2", r["done_area_m2"]) for r in rows)
    out["done_area_m2"] = round(done, 3)
    out["building_density"] = round(float(out["building_area_m2"]) / done, 9) if done > 0 else None
    total = int(job.get("tiles_total", 0))
    final = int(job.get("tiles_final", 0))
    out["job_tiles_total"] = total
    out["job_tiles_pending"] = max(total - final, 0)
    out["job_building_area_m2"] = Decimal(job.get("building_area_m2", 0)).quantize(Decimal("0.001"))
    out["job_status"] = job.get("status")
    out["model"] = ",".join(sorted({m for r in rows for m in r.get("model", "").split(",") if m}))
    return out


def query(store: ResultsStore, job_id: str, zoom: int | None = None, polygons: list[dict] | None = None, threads: int = 4,
          counts: list[int] | None = None):
    """(mode, rows, totals) for one job; ``counts``: the polygons' building counts
    (:func:`looking_glass.results.within_counts.within_outline_counts`). Raises ResultsError for
    an unknown job."""
    job = store.get_job(job_id)
    if job is None:
        raise ResultsError(f"no job {job_id!r} in table {store.table}")
    if zoom is not None and polygons is not None:
        raise ResultsError("give --zoom or --within, not both")
    if polygons is not None:
        items = fetch_tiles(store, job_id, quadkey_prefix_of([p["geometry"] for p in polygons]), threads)
        rows, mode = within_rows(items, polygons, counts), "within"
    elif zoom is not None:
        if not 0 <= zoom <= ZOOM:
            raise ResultsError(f"--zoom {zoom} must be between 0 and {ZOOM}")
        rows, mode = rollup_rows(fetch_tiles(store, job_id, threads=threads), zoom), "zoom"
    else:
        rows, mode = per_tile_rows(fetch_tiles(store, job_id, threads=threads)), "tile"
    return mode, rows, totals(rows, job)


# ---- formats ------------------------------------------------------------------------------------
COMMON = ("tiles", *STATUS_COLUMNS, "building_area_m2", "building_count", "done_area_m2", "building_density")
COLUMNS = {
    "tile": ("quadkey", "z", "x", "y", "status", *COMMON, "valid_fraction", "capture_date", "model", "reason"),
    "zoom": ("quadkey", "z", "x", "y", *COMMON, "capture_date", "model"),
    "within": ("name", *COMMON, "building_count_estimate", "tiles_partial", "tile_fraction", "capture_date", "model"),
}
TABLE_LEAVES_OUT = ("model",)  # one value for almost every job: the table's last line names it
CSV_PLACE = ("lon", "lat", "geometry")  # after every CSV row's data: where the row is
TOTAL_COLUMNS = (*COMMON, "job_status", "job_tiles_total", "job_tiles_pending", "job_building_area_m2", "model")


# How the text table shows a float column, so a column reads alike down its rows: areas in m2 to a
# tenth with thousands separators, shares of 1 to four places, estimated counts to a tenth, a
# polygon's tiles (tile_fraction: the sum of the fractions of tiles it holds) to a thousandth.
# (CSV and GeoJSON keep the full values.)
_TABLE_FORMATS = {"building_density": "{:.4f}", "valid_fraction": "{:.4f}", "tile_fraction": "{:,.3f}",
                  "building_count_estimate": "{:,.1f}"}


def _cell(v, column: str = "") -> str:
    v = json_value(v)
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if column.endswith("_m2"):
            return f"{v:,.1f}"
        return _TABLE_FORMATS.get(column, "{:.3f}" if abs(v) >= 1 or v == 0 else "{:.4f}").format(v)
    if isinstance(v, int) and column.endswith("_m2"):
        return f"{v:,}.0"
    return str(v)


def format_table(mode: str, rows: list[dict], tot: dict) -> str:
    """Rows of ``mode`` (``tile``, ``zoom``, ``within``) and totals as an aligned text table
    (names and reasons shown escaped: :func:`looking_glass.display.shown`); the model is not a
    column (:data:`TABLE_LEAVES_OUT`) but on the last line."""
    cols = tuple(c for c in COLUMNS[mode] if c not in TABLE_LEAVES_OUT)
    body = [[shown(_cell(r.get(c), c)) for c in cols] for r in rows]
    key = cols[0]
    total_row = [("TOTAL" if c == key else _cell(tot.get(c), c) if c in tot else "") for c in cols]
    widths = [max(len(c), *(len(r[i]) for r in [*body, total_row])) for i, c in enumerate(cols)]
    numeric = {c for c in cols if c not in ("quadkey", "name", "status", "reason")}

    def line(cells):
        return "  ".join(
            cell.rjust(w) if c in numeric else cell.ljust(w) for c, cell, w in zip(cols, cells, widths)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(list(cols)), rule, *(line(r) for r in body), rule, line(total_row)]
    out.append(
        f"job {shown(tot['job_status'])}: {tot['job_tiles_total'] - tot['job_tiles_pending']:,}/{tot['job_tiles_total']:,} "
        f"tiles final, {tot['job_tiles_pending']:,} pending; job building area {_cell(tot['job_building_area_m2'], 'job_building_area_m2')} m2; "
        f"model {shown(tot.get('model') or 'not recorded')}"
    )
    return "\n".join(out) + "\n"


def row_geometry(mode: str, row: dict):
    """The shapely geometry of a row in lon/lat degrees: the tile's (or zoom-Z cell's) square, or
    the user polygon of a ``within`` row."""
    return row["geometry"] if mode == "within" else tile_box(row["x"], row["y"], row["z"])


def row_centre(mode: str, row: dict) -> tuple[float, float]:
    """(lon, lat) of a row: the centre of its tile (the mercator centre: the middle pixel's
    corner, as the tile is drawn), or the centroid of a ``within`` row's polygon."""
    if mode == "within":
        point = row["geometry"].centroid
        return point.x, point.y
    w, _, e, _ = tile_bounds(row["x"], row["y"], row["z"])
    return (w + e) / 2, tile_center_lat(row["x"], row["y"], row["z"])


def _csv_value(v):
    v = json_value(v)
    return "" if v is None else v


def format_csv(mode: str, rows: list[dict], tot: dict) -> str:
    """Rows of ``mode`` as CSV, one line per tile, cell or polygon and nothing else (totals:
    :func:`format_totals`), with :data:`CSV_PLACE` columns after the data: ``lon``/``lat`` of
    :func:`row_centre` (7 decimals, about 1 cm) and ``geometry``, the row's polygon as WKT
    (EPSG:4326, 9 decimals). Numbers through :func:`json_value`, at full precision."""
    cols = COLUMNS[mode]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow((*cols, *CSV_PLACE))
    for r in rows:
        lon, lat = row_centre(mode, r)
        wkt = shapely.to_wkt(row_geometry(mode, r), rounding_precision=9, trim=True)
        writer.writerow([*(_csv_value(r.get(c)) for c in cols), round(lon, 7), round(lat, 7), wkt])
    return buf.getvalue()


def format_totals(fmt: str, tot: dict) -> str:
    """The totals of a query (:func:`totals`) on their own: ``csv`` is a header and one line of
    :data:`TOTAL_COLUMNS`, ``table`` one ``name value`` line each. ResultsError for another
    format (GeoJSON output carries them as its ``totals`` member); ``--within`` totals add
    ``building_count_estimate``."""
    cols = (*TOTAL_COLUMNS, *(c for c in ("building_count_estimate",) if c in tot))
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        writer.writerow([_csv_value(tot.get(c)) for c in cols])
        return buf.getvalue()
    if fmt == "table":
        return "".join(f"{c:22} {shown(_cell(tot.get(c))) or '-'}\n" for c in cols)
    raise ResultsError(f"--totals with --format {fmt}: give table or csv (GeoJSON output has a 'totals' member)")


def geojson_doc(mode: str, rows: list[dict], tot: dict, job_id: str) -> dict:
    """Rows as a FeatureCollection: tile squares (:func:`looking_glass.grid.tile_polygon`) or the
    user polygons (``within``), with the job id and totals as foreign members."""
    cols = COLUMNS[mode]
    features = []
    for r in rows:
        geometry = shapely.geometry.mapping(r["geometry"]) if mode == "within" else tile_polygon(r["x"], r["y"], r["z"])
        props = {c: json_value(r.get(c)) for c in cols}
        features.append({"type": "Feature", "geometry": geometry, "properties": props})
    return {
        "type": "FeatureCollection",
        "features": features,
        "job_id": job_id,
        "totals": {k: json_value(v) for k, v in tot.items()},
    }


def render(fmt: str, mode: str, rows: list[dict], tot: dict, job_id: str, totals_only: bool = False) -> str:
    """Rows in one of ``FORMATS`` (or, with ``totals_only``, :func:`format_totals`); ResultsError
    for another format."""
    if totals_only:
        return format_totals(fmt, tot)
    if fmt == "table":
        return format_table(mode, rows, tot)
    if fmt == "csv":
        return format_csv(mode, rows, tot)
    if fmt == "geojson":
        return json.dumps(geojson_doc(mode, rows, tot, job_id), default=json_value) + "\n"
    raise ResultsError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")

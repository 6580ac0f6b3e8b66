"""``results JOB --compare MAPPED``: where a job found buildings that are not mapped yet.

The job's buildings are the export's (:func:`looking_glass.results.buildings.job_buildings`: its
stored masks, outlined and stitched across tiles); the mapped buildings come from a GeoJSON,
GeoPackage, FlatGeobuf or OpenStreetMap extract (``.osm.pbf``) in any CRS, read only within the
job's done tiles (:func:`looking_glass.outlines.layers.read_polygons`; invalid features are
skipped with a warning naming them). The gap itself is :mod:`looking_glass.outlines.gap`: per
zoom-18 done tile, per coarser tile (``--zoom``) or per polygon (``--within``): predicted and
mapped area and count, unmapped area, completeness and a priority rank.

The job's buildings are held in memory (lon/lat polygons, a few hundred bytes each), and so are
the mapped buildings within the job's bounds: fine for a city, not for a country in one call.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np
import shapely

from looking_glass.grid import ZOOM, tile_box
from looking_glass.imagery.status import TILE_DONE
from looking_glass.outlines.gap import (
    GAP_VALUES,
    gap_rollup,
    gap_summary,
    gap_within,
    mapping_gap,
    unmapped_buildings,
)
from looking_glass.outlines.layers import read_polygons
from looking_glass.pipeline.store import ResultsStore
from looking_glass.results.buildings import job_buildings, job_tiles
from looking_glass.results.query import ResultsError, row_centre, row_geometry

__all__ = ["GAP_COLUMNS", "JobGap", "job_gap", "render_gap"]

GAP_COLUMNS = {
    "tile": ("quadkey", "z", "x", "y", *GAP_VALUES),
    "zoom": ("quadkey", "z", "x", "y", *GAP_VALUES),
    "within": ("name", *GAP_VALUES),
}


@dataclass
class JobGap:
    """The mapping gap of one job: ``mode`` ("tile", "zoom" or "within"), ``rows`` (ranked),
    ``summary`` (:func:`~looking_glass.outlines.gap.gap_summary` plus the job's id, status and
    the tiles compared), ``unmapped`` (the predicted buildings no mapped building touches,
    :class:`~looking_glass.outlines.stitch.Building`) and ``skipped`` (mapped features not used,
    with reasons)."""

    mode: str
    rows: list[dict]
    summary: dict
    unmapped: list
    skipped: list[str]


def job_gap(store: ResultsStore, s3, bucket: str, job_id: str, mapped_path: str, zoom: int | None = None,
            polygons: list[dict] | None = None, tolerance_m: float = 1.0, progress=None) -> JobGap:
    """The mapping gap of job ``job_id`` against the buildings in ``mapped_path`` (see the module
    docstring). ``polygons``: ``[{"name", "geometry"}]`` (``results.query.parse_polygons``).
    ``progress``: an object with ``total`` and ``update(n)`` (a tqdm bar) for the masks read.
    Raises ResultsError (both ``zoom`` and ``polygons``, a zoom outside 0..18),
    ExportError (unknown job, a done tile without a mask) or OutlinesError (unreadable file)."""
    if zoom is not None and polygons is not None:
        raise ResultsError("give --zoom or --within, not both")
    if zoom is not None and not 0 <= zoom <= ZOOM:
        raise ResultsError(f"--zoom {zoom} must be between 0 and {ZOOM}")
    job, items = job_tiles(store, job_id)
    done = [(int(i["z"]), int(i["x"]), int(i["y"])) for i in items if i["status"] == TILE_DONE]
    if progress is not None:
        progress.total = len(done)
    predicted = list(job_buildings(s3, bucket, items, progress=progress.update if progress is not None else None))
    if done:
        boxes = np.array([tile_box(x, y, z) for z, x, y in done], dtype=object)
        bbox = tuple(float(v) for v in shapely.total_bounds(boxes))
    else:
        bbox = (0.0, 0.0, 0.0, 0.0)
    mapped = read_polygons(mapped_path, bbox=bbox)
    tile_rows = mapping_gap(predicted, mapped, tiles=done, tolerance_m=tolerance_m)
    if polygons is not None:
        mode, rows = "within", gap_within(predicted, mapped, polygons, tolerance_m)
    elif zoom is not None and zoom < ZOOM:
        mode, rows = "zoom", gap_rollup(tile_rows, zoom)
    else:
        mode, rows = "tile", tile_rows
    summary = {**gap_summary(tile_rows), "job_id": job_id, "job_status": job.get("status"),
               "job_tiles_total": int(job.get("tiles_total", len(items))), "tiles_compared": len(done),
               "mapped_features_skipped": len(mapped.skipped)}
    return JobGap(mode, rows, summary, unmapped_buildings(predicted, mapped), list(mapped.skipped))


def _value(column: str, value):
    if value is None:
        return ""
    if column.endswith("_m2"):
        return round(float(value), 3)
    if column == "completeness":
        return round(float(value), 4)
    return value


def render_gap(fmt: str, gap: JobGap) -> str:
    """The gap's rows as ``table`` (aligned text, then a summary line), ``csv`` (one line per
    row with ``lon``, ``lat`` and a WKT ``geometry``, as ``results`` CSV) or ``geojson`` (tile
    squares or the polygons, with ``summary`` as a foreign member)."""
    cols = GAP_COLUMNS[gap.mode]
    if fmt == "geojson":
        features = [{"type": "Feature", "geometry": shapely.geometry.mapping(row_geometry(gap.mode, r)),
                     "properties": {c: r[c] for c in cols}} for r in gap.rows]
        return json.dumps({"type": "FeatureCollection", "features": features, "summary": gap.summary}) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow((*cols, "lon", "lat", "geometry"))
        for r in gap.rows:
            lon, lat = row_centre(gap.mode, r)
            wkt = shapely.to_wkt(row_geometry(gap.mode, r), rounding_precision=9, trim=True)
            writer.writerow([*(_value(c, r[c]) for c in cols), round(lon, 7), round(lat, 7), wkt])
        return buf.getvalue()
    if fmt == "table":
        body = [[str(_value(c, r[c])) for c in cols] for r in gap.rows]
        widths = [max(len(c), *(len(row[i]) for row in body)) if body else len(c) for i, c in enumerate(cols)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths)).rstrip()]
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)).rstrip() for row in body]
        s = gap.summary
        done = "n/a" if s["completeness"] is None else f"{100 * s['completeness']:.1f}%"
        lines.append(f"job {s['job_status']}: {s['tiles_compared']:,} done tiles of {s['job_tiles_total']:,} compared; "
                     f"predicted {s['predicted_count']:,} buildings ({s['predicted_area_m2']:,.0f} m2), mapped "
                     f"{s['mapped_count']:,} ({s['mapped_area_m2']:,.0f} m2), unmapped {s['unmapped_area_m2']:,.0f} m2; "
                     f"completeness {done}")
        return "\n".join(lines) + "\n"
    raise ResultsError(f"unknown format {fmt!r}; one of table, csv, geojson")

"""``results JOB --compare MAPPED``: where a job found buildings that are not mapped yet.

The job's buildings are the export's (:func:`looking_glass.results.buildings.job_building_rows`:
its stored masks, outlined and stitched across tiles); the mapped buildings come from a GeoJSON,
GeoPackage, FlatGeobuf or OpenStreetMap extract (``.osm.pbf``) in any CRS
(:class:`looking_glass.outlines.reference.MappedReference`; invalid features are skipped with a
warning naming them). The gap itself is :mod:`looking_glass.outlines.gap`: per zoom-18 done tile,
per coarser tile (``--zoom``) or per polygon (``--within``, compared inside the job's done
tiles): predicted and mapped area and count, unmapped area, completeness and a priority rank.

Streamed in bands of tile rows, so memory does not grow with the job: the tiles are read band by
band (:mod:`.bands`) and outlined row by row; once every building touching a band of finished
rows has come out of the stitcher, those rows are compared (the mapped buildings read for that
extent only) and added into the results, and the buildings no later row needs are dropped
(those no mapped building touches are kept for the map, up to :data:`UNMAPPED_KEPT`, and
written to ``unmapped_out`` as they come). Held at once: a band of tile items, the buildings
of the rows not finished yet and one band's mapped buildings (all of them, within the job's
extent, for a GeoJSON or ``.osm.pbf`` reference: see :mod:`looking_glass.outlines.reference`),
plus the result rows themselves: one per done tile without ``--zoom``/``--within`` (a few
hundred bytes each; use ``--zoom`` or ``--within`` for country-sized jobs), else one per cell.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from looking_glass.grid import ZOOM, col_of_lon, row_of_lat, tile_box
from looking_glass.imagery.status import TILE_DONE
from looking_glass.outlines.errors import EmptyReferenceWarning
from looking_glass.outlines.exports import GeoJSONWriter, read_written_geojson
from looking_glass.outlines.gap import (
    COMPLETENESS_MEANS,
    GAP_VALUES,
    completeness,
    gap_summary,
    mapping_gap,
    rank_rows,
    rollup_add,
    rollup_rows,
    unmapped_buildings,
    within_parts,
    within_regions,
    within_rows,
)
from looking_glass.outlines.reference import MappedReference
from looking_glass.outlines.stitch import OutlineOptions
from looking_glass.pipeline.store import ResultsStore
from looking_glass.results.bands import BAND_ZOOM, job_done_bounds, job_items
from looking_glass.results.buildings import (
    Provenance,
    TileSources,
    TileTally,
    check_out_path,
    job_building_rows,
    job_record,
    sourced_rows,
    writer_for,
)
from looking_glass.results.query import ResultsError, row_centre, row_geometry
from looking_glass.runtime.atomic import atomic_output

__all__ = ["GAP_COLUMNS", "UNMAPPED_KEPT", "JobGap", "count_note", "export_unmapped", "job_gap", "open_reference",
           "render_gap", "results_difference"]

GAP_COLUMNS = {
    "tile": ("quadkey", "z", "x", "y", *GAP_VALUES),
    "zoom": ("quadkey", "z", "x", "y", *GAP_VALUES),
    "within": ("name", *GAP_VALUES),
}
UNMAPPED_KEPT = 50_000  # not-yet-mapped buildings kept in memory for the map page


@dataclass
class JobGap:
    """The mapping gap of one job: ``mode`` ("tile", "zoom" or "within"), ``rows`` (ranked),
    ``summary`` (:func:`~looking_glass.outlines.gap.gap_summary` plus the job's id, status and
    the tiles compared), ``unmapped`` (the first :data:`UNMAPPED_KEPT` predicted buildings no
    mapped building touches, :class:`~looking_glass.outlines.stitch.Building`),
    ``unmapped_count`` (all of them), ``unmapped_file`` (the GeoJSON holding all of them, when
    asked for), ``skipped`` (mapped features not used, with reasons), ``mapped`` (the first
    ``keep_mapped`` mapped footprints in the compared tiles, lon/lat polygons, each once: the
    page's layer of what was compared against; fewer than ``summary["mapped_count"]`` when cut
    short) and ``held`` (what the
    streaming held at most at once: ``most_tiles`` done tiles compared together, ``most_buildings``
    predicted buildings, ``most_mapped`` mapped ones from one read, and ``reference_reads``)."""

    mode: str
    rows: list[dict]
    summary: dict
    unmapped: list
    skipped: list[str]
    unmapped_count: int = 0
    unmapped_file: str | None = None
    held: dict = field(default_factory=dict, repr=False)
    mapped: list = field(default_factory=list, repr=False)


def _in_tiles(geoms: np.ndarray, tiles: set[tuple[int, int]]) -> np.ndarray:
    """(N,) bool: whether each lon/lat polygon's counting point (its centroid, or a point on its
    surface when the centroid is outside it: the rule of ``mapped_count``) is in one of the
    zoom-18 ``tiles`` ((x, y) pairs), so that a building read by two bands is kept once."""
    if len(geoms) == 0:
        return np.zeros(0, dtype=bool)
    cent = shapely.centroid(geoms)
    pts = np.where(shapely.contains(geoms, cent), cent, shapely.point_on_surface(geoms))
    xs = np.floor(col_of_lon(shapely.get_x(pts), ZOOM)).astype(np.int64)
    ys = np.floor(row_of_lat(shapely.get_y(pts), ZOOM)).astype(np.int64)
    return np.array([(int(x), int(y)) in tiles for x, y in zip(xs, ys, strict=True)], dtype=bool)


def _row_span(polygon) -> tuple[int, int]:
    """(northernmost, southernmost) zoom-18 tile row a lon/lat polygon reaches."""
    _, south, _, north = polygon.bounds
    return int(np.floor(row_of_lat(north, ZOOM))), int(np.floor(row_of_lat(south, ZOOM)))


class _Gap:
    """The results of a streamed gap, added band by band (see the module docstring)."""

    def __init__(self, mode: str, zoom: int | None, polygons, tolerance_m: float, reference: MappedReference,
                 unmapped_out, keep: int, keep_mapped: int = 0):
        self.mode, self.zoom, self.polygons, self.tolerance_m = mode, zoom, polygons, tolerance_m
        self.regions = within_regions(polygons) if polygons is not None else None
        self.reference, self.keep, self.keep_mapped = reference, keep, keep_mapped
        self.mapped: list = []  # mapped footprints for the page, each once (see JobGap.mapped)
        self.tile_rows: list[dict] = []
        self.groups: dict[str, dict] = {}
        self.within: dict[int, dict] = {}
        self.totals = gap_summary([])
        self.unmapped: list = []
        self.unmapped_count = 0
        self.writer = GeoJSONWriter(unmapped_out) if unmapped_out is not None else None
        self.pending: list[tuple] = []  # (building, first row, last row) still needed by a later band
        self.most_pending = self.most_tiles = 0  # the most buildings / tiles held at once

    def add_buildings(self, buildings: list) -> None:
        self.pending.extend((b, *_row_span(b.polygon)) for b in buildings)
        self.most_pending = max(self.most_pending, len(self.pending))

    def compare(self, tiles: list[tuple[int, int, int]], final: int | None) -> None:
        """Compare the done ``tiles`` of the rows finished (above ``final``; all rows when None)
        and let go of the buildings no later row reaches."""
        rows_in = [p for p in self.pending if final is None or p[1] < final]
        self.most_tiles = max(self.most_tiles, len(tiles))
        if not tiles and not rows_in:
            return
        boxes = [tile_box(x, y, z) for z, x, y in tiles] + [p[0].polygon for p in rows_in]
        mapped = self.reference.read(tuple(shapely.total_bounds(np.array(boxes, dtype=object))))
        if len(self.mapped) < self.keep_mapped and tiles:
            here = np.asarray(mapped)[_in_tiles(np.asarray(mapped), {(x, y) for _, x, y in tiles})]
            self.mapped.extend(here[:self.keep_mapped - len(self.mapped)].tolist())
        predicted = [p[0] for p in rows_in]
        rows = mapping_gap(predicted, mapped, tiles=tiles, tolerance_m=self.tolerance_m, ranked=False)
        part = gap_summary(rows)
        for k in self.totals:
            if k != "completeness":
                self.totals[k] += part[k]
        if self.mode == "tile":
            self.tile_rows.extend(rows)
        elif self.mode == "zoom":
            rollup_add(self.groups, rows, self.zoom)
        else:
            within_parts(predicted, mapped, self.regions, tiles, self.tolerance_m, sums=self.within)
        done = [p[0] for p in rows_in if final is None or p[2] < final]
        self.pending = [p for p in self.pending if not (final is None or p[2] < final)]
        for b in sorted(unmapped_buildings(done, mapped), key=lambda b: b.id):
            self.unmapped_count += 1
            if len(self.unmapped) < self.keep:
                self.unmapped.append(b)
            if self.writer is not None:
                self.writer.write(b)

    def rows(self) -> list[dict]:
        if self.mode == "within":
            return within_rows(self.polygons, self.within)
        if self.mode == "zoom":
            return rollup_rows(self.groups)
        return rank_rows(self.tile_rows, "quadkey")


def open_reference(store: ResultsStore, job_id: str, mapped_path) -> MappedReference:
    """The mapped buildings of ``mapped_path`` as :func:`job_gap` reads them for job ``job_id``
    (GeoJSON and OpenStreetMap files within the extent of its done tiles). Opening checks the
    file: a command that draws or writes something before the gap opens it first, so a file with
    nothing to compare against is refused before anything is drawn. Raises OutlinesError (an
    unreadable file, or features but no usable polygon)."""
    return MappedReference(mapped_path, bounds=lambda: job_done_bounds(store, job_id))


def job_gap(store: ResultsStore, s3, bucket: str, job_id: str, mapped_path, zoom: int | None = None,
            polygons: list[dict] | None = None, tolerance_m: float = 1.0, progress=None,
            band_zoom: int = BAND_ZOOM, unmapped_out=None, keep_unmapped: int = UNMAPPED_KEPT,
            keep_mapped: int = 0, options: OutlineOptions | None = None, attribution: str = "") -> JobGap:
    """The mapping gap of job ``job_id`` against the buildings in ``mapped_path`` (a path, or the
    :class:`MappedReference` :func:`open_reference` opened; see the module docstring). ``polygons``: ``[{"name", "geometry"}]`` (``results.polygons.read_within_polygons``).
    ``progress``: an object with ``total`` and ``update(n)`` (a tqdm bar) for the masks read.
    ``band_zoom``: rows are compared in bands of at least ``2 ** (18 - band_zoom)`` tile rows.
    ``unmapped_out``: a GeoJSON file to write every not-yet-mapped building to as they come
    (removed again if an error stops the gap). ``keep_mapped``: how many mapped footprints to keep
    for a map (``JobGap.mapped``; 0 by default: only ``map --compare`` draws them). ``options``: how
    the job's buildings are outlined (``export``'s, e.g. regularised; default OutlineOptions()).
    The buildings carry ``export``'s provenance (``results.buildings.Provenance``, ``attribution``
    in it), so ``unmapped_out`` has the same properties as an export.
    Raises ResultsError (both ``zoom`` and ``polygons``, a zoom outside 0..18),
    ExportError (unknown job, a done tile without a mask) or OutlinesError (unreadable file)."""
    if zoom is not None and polygons is not None:
        raise ResultsError("give --zoom or --within, not both")
    if zoom is not None and not 0 <= zoom <= ZOOM:
        raise ResultsError(f"--zoom {zoom} must be between 0 and {ZOOM}")
    job = job_record(store, job_id)
    reference = mapped_path if isinstance(mapped_path, MappedReference) else open_reference(store, job_id, mapped_path)
    mode = "within" if polygons is not None else "zoom" if zoom is not None and zoom < ZOOM else "tile"
    gap = _Gap(mode, zoom, polygons, tolerance_m, reference, unmapped_out, keep_unmapped, keep_mapped)
    if progress is not None:
        progress.total = int(job.get("tiles_done", 0))
    tally, waiting, sources = TileTally(), deque(), TileSources()  # waiting: done tiles not compared yet

    def items():
        for item in sources.through(tally.through(job_items(store, job_id, band_zoom))):
            if item["status"] == TILE_DONE:
                waiting.append((int(item["z"]), int(item["x"]), int(item["y"])))
            yield item

    band = 2 ** (ZOOM - band_zoom)
    complete = False
    try:
        rows = job_building_rows(s3, bucket, items(), options, progress=getattr(progress, "update", None))
        for final, buildings in sourced_rows(rows, sources, Provenance.of_job({"job_id": job_id, **job}, attribution)):
            gap.add_buildings(buildings)
            if final is not None and (not waiting or final - waiting[0][2] < band):
                continue  # too few finished rows yet for a band
            tiles = []
            while waiting and (final is None or waiting[0][2] < final):
                tiles.append(waiting.popleft())
            gap.compare(tiles, final)
        complete = True
    finally:
        if gap.writer is not None:
            gap.writer.close()
            if not complete:  # no partial file: an error leaves none
                Path(unmapped_out).unlink(missing_ok=True)
    reference.warn()
    if tally.done and gap.totals["mapped_area_m2"] == 0 and gap.totals["mapped_count"] == 0:
        # Almost always the wrong file or area (or one read as empty): say so, not just "0%".
        # most_held: the most features one read of the file gave for a band of done tiles (those
        # whose extent meets the band's): none means nothing of the file lies anywhere near the job.
        near = ("and none near them either (no feature of the file lies within their extent)" if not reference.most_held
                else f"(up to {reference.most_held:,} of its features lie near them, none on a done tile)")
        warnings.warn(f"{reference.path}: no mapped building within the job's {tally.done:,} done tiles {near}: check "
                      "that it is the right file and covers this area; every predicted building counts as unmapped",
                      EmptyReferenceWarning, stacklevel=2)
    summary = {**gap.totals, "completeness": completeness(gap.totals["predicted_area_m2"], gap.totals["unmapped_area_m2"]),
               "completeness_means": COMPLETENESS_MEANS, "job_id": job_id, "job_status": job.get("status"),
               "job_tiles_total": int(job.get("tiles_total", tally.items)), "tiles_compared": tally.done,
               "mapped_features_skipped": reference.tally.skipped_count,
               # what `results` shows for the same done tiles (mask pixels, the workers' per-tile
               # counts), so the table can say how and by how much the outlines differ from it
               "results_building_area_m2": float(tally.building_area_m2),
               "results_building_count": tally.building_count}
    return JobGap(mode, gap.rows(), summary, gap.unmapped, list(reference.skipped), gap.unmapped_count,
                  None if unmapped_out is None else str(unmapped_out),
                  {"reference_reads": reference.reads, "most_mapped": reference.most_held,
                   "most_buildings": gap.most_pending, "most_tiles": gap.most_tiles}, gap.mapped)


def export_unmapped(store: ResultsStore, s3, bucket: str, job_id: str, mapped_path: str, out: str, fmt: str,
                    options: OutlineOptions | None = None, progress=None, band_zoom: int = BAND_ZOOM,
                    attribution: str = "") -> JobGap:
    """``export JOB --unmapped MAPPED``: write to ``out`` in ``fmt`` (a key of
    ``results.buildings.EXPORT_FORMATS``, e.g. ``osm`` for JOSM) only the job's buildings that no
    building of ``mapped_path`` touches (:func:`job_gap`'s not-yet-mapped buildings: the mapper's
    to-do list). The buildings stream through a temporary GeoJSON beside ``out``, so memory does
    not grow with the job; ``out`` is replaced only at the end (an error leaves no partial file).
    Returns the gap (``unmapped_count``: the buildings written). Raises what :func:`job_gap` and
    ``export`` raise (ExportError for an unusable ``out``, before anything is read). The
    buildings and the file carry ``export``'s provenance (``attribution``: the imagery's credit)."""
    target = check_out_path(out)
    # Opened (and a file with nothing to compare against refused) before the temporary folder
    # is made: a refusal then leaves nothing behind, and no traceback.
    reference = open_reference(store, job_id, mapped_path)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as work:
        todo = Path(work) / "unmapped.geojson"
        gap = job_gap(store, s3, bucket, job_id, reference, progress=progress, band_zoom=band_zoom,
                      unmapped_out=todo, keep_unmapped=0, options=options, attribution=attribution)
        meta = Provenance.of_job({"job_id": job_id, **job_record(store, job_id)}, attribution).metadata()
        with atomic_output(target) as tmp:
            writer_for(fmt, meta)(read_written_geojson(todo), str(tmp))
    gap.unmapped_file = None  # the temporary GeoJSON is gone; the buildings are in ``out``
    return gap


def _value(column: str, value):
    if value is None:  # a count of tiles stored before counts
        return ""
    if column.endswith("_m2"):
        return round(float(value), 3)
    if column == "completeness":
        return round(float(value), 4)
    return value


def results_difference(summary: dict) -> str:
    """One line saying why the predicted totals of a gap ``summary`` (:func:`job_gap`'s) differ
    from ``results``' totals for the same done tiles, with both figures and the differences:
    the gap measures the traced outlines ``export`` writes (specks under 5 m2 dropped, edges
    simplified, each building counted once where its centre is), ``results`` the workers' mask
    pixels and per-tile counts (see docs/results.md, "The mapping gap")."""
    area, count = summary["results_building_area_m2"], summary["results_building_count"]
    pa, pc = summary["predicted_area_m2"], summary["predicted_count"]
    counted = "an unknown count (tiles stored before counts)" if count is None else \
        f"{count:,} buildings ({pc - count:+,})"
    return (f"predicted = the traced outlines `export` writes (specks under 5 m2 dropped, edges simplified, "
            f"a building cut by tile edges counted once); `results` sums the workers' mask pixels and per-tile "
            f"counts over the same {summary['tiles_compared']:,} done tiles: {area:,.0f} m2 ({pa - area:+,.0f} m2), "
            f"{counted}")


def count_note(gap: JobGap) -> str | None:
    """One line for the rows whose area and count seem to disagree (``mapped_area_m2`` above 0
    with ``mapped_count`` 0, or the same for predicted): areas are shared by every row a building
    covers, a building is counted only in the row holding its centre. None when no row is such."""
    odd = sum(1 for r in gap.rows if any(r[f"{k}_area_m2"] > 0 and not r[f"{k}_count"] for k in ("mapped", "predicted")))
    if not odd:
        return None
    return (f"note: {odd:,} row(s) have building area but a count of 0: a building's area is shared by every row "
            "it covers, but it is counted once, in the row that holds its centre (centroid)")


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
        lines.append(f"job {s['job_status']}: {s['tiles_compared']:,} done tiles of {s['job_tiles_total']:,} compared; "
                     f"predicted {s['predicted_count']:,} buildings ({s['predicted_area_m2']:,.0f} m2), mapped "
                     f"{s['mapped_count']:,} ({s['mapped_area_m2']:,.0f} m2), unmapped {s['unmapped_area_m2']:,.0f} m2; "
                     f"completeness {100 * s['completeness']:.1f}% ({COMPLETENESS_MEANS})")
        lines.extend(n for n in [count_note(gap)] if n)
        lines.append(results_difference(s))
        return "\n".join(lines) + "\n"
    raise ResultsError(f"unknown format {fmt!r}; one of table, csv, geojson")

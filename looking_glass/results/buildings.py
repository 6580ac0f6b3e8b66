"""A job's buildings: outlines stitched across tiles from the job's stored masks, written as
GeoJSON, GeoPackage, FlatGeobuf or JOSM-ready ``.osm`` (``looking-glass export``), and the mapping
gap of those buildings against already-mapped ones (``results --compare``).

How: the job's tile items are read in row-major order (y, then x) band by band
(:func:`looking_glass.results.bands.job_items`: 16 tile rows at a time), the ``done`` tiles' stored
rasters read through :func:`looking_glass.results.masks.read_tile_rasters_all` (a few dozen at a
time) and streamed through :func:`looking_glass.outlines.stitch.outline_rows` (the stored masks,
or for the sdt head the stored signed distance: the rule the worker's ``building_count`` uses)
into the writer of :mod:`looking_glass.outlines.exports`, which writes as buildings come.

Memory does not grow with the job: one band of tile items, a few dozen result objects, the
buildings open across the current tile row and one writer batch. Counts for the report are
tallied as the items stream past (:class:`TileTally`).

Every building says where it comes from (:class:`Provenance`, :class:`TileSources`): the job
id, the imagery source's name, the capture date(s) of the done tiles it lies on and the model
that produced them (the tile results' ``capture_date``, ``model_id``/``model_version``); the file
says the job, its model as ``jobs`` names it, the imagery and its attribution.

Tiles that are not ``done`` (failed, no imagery, skipped, or not processed yet) have no mask:
:class:`ExportReport` says how many, and the export holds the done tiles' buildings only.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from looking_glass.errors import EXIT_BAD_INPUT, LookingGlassError
from looking_glass.grid import col_of_lon, row_of_lat, tile_box
from looking_glass.imagery.status import TILE_DONE, TILE_FAILED, TILE_NO_IMAGERY, TILE_SKIPPED
from looking_glass.model.registry import run_label
from looking_glass.outlines.exports import write_geojson, write_osm, write_vector
from looking_glass.outlines.stitch import Building, OutlineOptions, outline_rows
from looking_glass.pipeline.job_model import job_models_label
from looking_glass.pipeline.store import ENQUEUEING, RUNNING, ResultsStore
from looking_glass.results.bands import BAND_ZOOM, job_items
from looking_glass.results.masks import MaskError, read_tile_rasters_all
from looking_glass.runtime.atomic import atomic_output
from looking_glass.runtime.imagery_sources import job_imagery_label

__all__ = ["EXPORT_FORMATS", "ExportError", "ExportReport", "Provenance", "SourcedBuilding", "TileSources", "TileTally",
           "check_out_path", "export_buildings", "export_format", "job_building_rows", "job_buildings", "job_record",
           "osm_tags", "sourced_rows", "writer_for"]

# --format -> the file-name suffixes that name it
# How a tile that ended without a result is named in the export's note.
_NOT_DONE = {TILE_FAILED: "failed", TILE_NO_IMAGERY: "without imagery", TILE_SKIPPED: "skipped (no data in the imagery)"}
EXPORT_FORMATS = {
    "geojson": (".geojson", ".json"),
    "gpkg": (".gpkg",),
    "fgb": (".fgb",),
    "osm": (".osm",),
}


class ExportError(LookingGlassError, ValueError):
    """The export cannot be made (unknown job, output not writable, format and file name
    disagree: exit status 2; a done tile without a readable mask: 1); the message says which."""

    exit_code = EXIT_BAD_INPUT


@dataclass
class ExportReport:
    """What an export wrote: ``buildings`` features from ``tiles_done`` tiles; ``tiles_total``
    of the job, of which ``tiles_not_done`` have a final status without a mask (failed, no
    imagery, skipped) and ``tiles_pending`` no result yet; ``building_count`` is the sum of the
    done tiles' stored counts (None when some done tile has none)."""

    job_id: str
    status: str
    buildings: int
    tiles_total: int
    tiles_done: int
    tiles_not_done: int
    tiles_pending: int
    building_count: int | None
    not_done: dict[str, int] = field(default_factory=dict)  # final status other than done -> count

    @property
    def tiles_missing(self) -> int:
        """Tiles of the job whose buildings are not in the export."""
        return self.tiles_not_done + self.tiles_pending

    def missing_note(self) -> str | None:
        """One line saying which tiles are not in the export and why, true to the job's status
        (None when every tile is in it): nothing at all to export, tiles still to come (export
        again when the job is complete) or tiles that ended without a result (``retry``)."""
        if not self.tiles_missing:
            return None
        why = [f"{n:,} {_NOT_DONE.get(k, k)}" for k, n in sorted(self.not_done.items()) if n]
        head = f"job {self.job_id} is {self.status}: "
        if not self.tiles_done and not self.tiles_pending:
            return (head + f"no tile of it has a result to export ({', '.join(why)}, of {self.tiles_total:,} "
                    "tiles): the export holds no buildings")
        if self.tiles_pending:
            why.insert(0, f"{self.tiles_pending:,} without a result yet")
            again = "; export again when the job is complete" if self.status in (RUNNING, ENQUEUEING) else ""
            return head + f"{self.tiles_missing:,} of {self.tiles_total:,} tiles are not in the export ({', '.join(why)}){again}"
        retry = f"; `looking-glass retry {self.job_id}` runs the failed ones again" if self.not_done.get(TILE_FAILED) else ""
        return (head + f"{self.tiles_missing:,} of {self.tiles_total:,} tiles are not in the export: they ended "
                f"without a result ({', '.join(why)}){retry}")


def export_format(path: str, fmt: str | None) -> str:
    """The format of ``--format``/``--out``: ``fmt`` if given (it must agree with a known
    suffix of ``path``), else the one ``path``'s suffix names. Raises ExportError otherwise."""
    name = str(path).lower()
    by_suffix = next((f for f, suffixes in EXPORT_FORMATS.items() if name.endswith(suffixes)), None)
    if fmt is None:
        if by_suffix is None:
            raise ExportError(f"--out {path}: cannot tell the format from the name; give --format "
                              f"({', '.join(EXPORT_FORMATS)}) or end it in .geojson, .gpkg, .fgb or .osm")
        return by_suffix
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    if by_suffix is not None and by_suffix != fmt:
        raise ExportError(f"--out {path} names a {by_suffix} file but --format is {fmt}")
    return fmt


def job_record(store: ResultsStore, job_id: str) -> dict:
    """The job record of ``job_id``. Raises ExportError for an unknown job."""
    job = store.get_job(job_id)
    if job is None:
        raise ExportError(f"no job {job_id!r} in table {store.table} (see `looking-glass jobs`)")
    return job


@dataclass
class TileTally:
    """Counts of the tile items streamed through :meth:`through`: ``items`` in all, ``done``
    ones, ``building_count``, the sum of the done items' stored counts (None once a done
    item has none), and ``building_area_m2``, the sum of the done items' stored (mask) areas:
    the figures ``results`` shows for these tiles."""

    items: int = 0
    done: int = 0
    building_count: int | None = 0
    building_area_m2: Decimal = Decimal(0)
    statuses: dict[str, int] = field(default_factory=dict)  # every status met -> its count

    def through(self, items: Iterable[dict]) -> Iterator[dict]:
        """``items`` unchanged, counted as they pass."""
        for item in items:
            self.items += 1
            self.statuses[item["status"]] = self.statuses.get(item["status"], 0) + 1
            if item["status"] == TILE_DONE:
                self.done += 1
                self.building_area_m2 += Decimal(item.get("building_area_m2", 0))
                count = item.get("building_count")
                self.building_count = None if count is None or self.building_count is None else \
                    self.building_count + int(count)
            yield item


@dataclass(frozen=True)
class Provenance:
    """Where a job's exported buildings come from: ``job_id``, ``job_model`` (the model(s)
    that processed the job's tiles, as ``jobs`` names it: ``ID/VERSION``, several comma-joined after a
    retry under another model: :func:`~looking_glass.pipeline.job_model.job_models_label`),
    ``imagery`` (the source's registered name; for the unnamed default its GeoTIFFs' file names
    or provider's host: :func:`~looking_glass.runtime.imagery_sources.job_imagery_label`) and its
    registered ``attribution`` ("" when none)."""

    job_id: str
    job_model: str
    imagery: str
    attribution: str = ""

    @classmethod
    def of_job(cls, job: dict, attribution: str = "") -> Provenance:
        """The provenance of job record ``job`` (``job_id``, ``model``, ``imagery``)."""
        return cls(str(job.get("job_id", "")), job_models_label(job),
                   job_imagery_label(job), attribution or "")

    def metadata(self) -> dict:
        """The file-level metadata of an export (flat strings; what each writer's ``meta`` takes)."""
        return {"generator": "Looking Glass", "job_id": self.job_id, "job_model": self.job_model,
                "imagery": self.imagery, "attribution": self.attribution}


@dataclass
class SourcedBuilding(Building):
    """A :class:`~looking_glass.outlines.stitch.Building` with its provenance: ``job_id``,
    ``imagery`` (source name), ``capture_date`` (the dates of the done tiles it lies on, newest
    first, comma-joined; "" where the source gives none) and ``model`` (``ID/VERSION`` of the
    model that produced those tiles, comma-joined if several; "" where not recorded)."""

    sources: dict = field(default_factory=dict)

    def properties(self) -> dict:
        """The building's export attributes followed by its provenance."""
        return {**super().properties(), **self.sources}


class TileSources:
    """The capture date and model of each done tile streamed through :meth:`through`, by tile,
    for :meth:`sourced`; :meth:`forget_above` lets go of the rows no later building reaches, so
    memory holds a few tile rows, not the job."""

    def __init__(self):
        self._rows: dict[int, dict[int, tuple[str, str]]] = {}  # y -> x -> (capture_date, model)

    def through(self, items: Iterable[dict]) -> Iterator[dict]:
        """``items`` unchanged, the done ones' dates and models noted as they pass."""
        for item in items:
            if item["status"] == TILE_DONE:
                self._rows.setdefault(int(item["y"]), {})[int(item["x"])] = (
                    str(item.get("capture_date") or ""), run_label(item.get("model_id"), item.get("model_version")))
            yield item

    def sourced(self, building: Building, provenance: Provenance) -> SourcedBuilding:
        """``building`` with the provenance of the tiles whose inside it reaches (a building that
        only touches a tile's edge is not on it)."""
        z = building.tile[0]
        w, s, e, n = building.polygon.bounds
        x0, x1 = int(col_of_lon(w, z)), int(col_of_lon(e, z))
        y0, y1 = int(row_of_lat(n, z)), int(row_of_lat(s, z))
        found = [(x, y, self._rows.get(y, {}).get(x)) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
        found = [(x, y, got) for x, y, got in found if got is not None]
        if len(found) > 1:  # its bounds reach several tiles: keep those it overlaps by more than a sliver
            least = 1e-6 * building.polygon.area
            found = [f for f in found if building.polygon.intersection(tile_box(f[0], f[1], z)).area > least]
        dates = {d for _, _, (when, _) in found for d in when.split(",") if d}
        models = {m for _, _, (_, m) in found if m}
        sources = {"job_id": provenance.job_id, "imagery": provenance.imagery,
                   "capture_date": ",".join(sorted(dates, reverse=True)), "model": ",".join(sorted(models))}
        return SourcedBuilding(building.id, building.polygon, building.area_m2, building.tile, building.tiles,
                               building.complete, sources)

    def forget_above(self, row: int) -> None:
        """Let go of the tile rows north of ``row`` (``y < row``)."""
        for y in [y for y in self._rows if y < row]:
            del self._rows[y]


def sourced_rows(rows: Iterable[tuple[int | None, list]], sources: TileSources,
                 provenance: Provenance) -> Iterator[tuple[int | None, list]]:
    """:func:`job_building_rows`' rows with every building a :class:`SourcedBuilding` (``sources``
    must see the tile items that feed ``rows``); rows no later building reaches are forgotten."""
    for final, buildings in rows:
        yield final, [sources.sourced(b, provenance) for b in buildings]
        if final is not None:
            sources.forget_above(final)


def osm_tags(props: dict) -> list[tuple[str, str]]:
    """The OSM tags of an exported building after ``building=yes`` (OSM's conventions: several
    values of one key separated by ``;``): ``source=<imagery>;Looking Glass <model>`` (one
    ``Looking Glass <model>`` value per model, ``Looking Glass`` alone when none is recorded) and,
    where the capture date is known, ``source:date=<YYYY-MM-DD>`` (several dates ``;``-joined)."""
    models = [f"Looking Glass {m}" for m in str(props.get("model") or "").split(",") if m] or ["Looking Glass"]
    tags = [("source", ";".join(p for p in (str(props.get("imagery") or ""), *models) if p))]
    if props.get("capture_date"):
        tags.append(("source:date", str(props["capture_date"]).replace(",", ";")))
    return tags


def _predictions(s3, bucket: str, items: Iterable[dict], progress, threads: int):
    """(head, ``((z, x, y), prediction)`` stream) of the ``done`` items among ``items``: the
    stored head (sdt when the first done tile kept its signed distance, else binary), or
    (None, empty) when no item is done."""
    done = (i for i in items if i["status"] == TILE_DONE)
    rasters = read_tile_rasters_all(s3, bucket, done, threads)
    first = next(rasters, None)
    if first is None:
        return None, iter(())
    head = "sdt" if first[1].sdt_m is not None else "binary"

    def predictions():
        for item, r in itertools.chain([first], rasters):
            if (r.sdt_m is not None) != (head == "sdt"):
                z, x, y = item["z"], item["x"], item["y"]
                raise MaskError(f"tile {z}/{x}/{y} has {'no ' if head == 'sdt' else 'a '}signed distance stored "
                                "unlike the job's first tile (a job run by two models?)")
            yield (int(item["z"]), int(item["x"]), int(item["y"])), (r.sdt_m if head == "sdt" else r.mask)
            if progress is not None:
                progress(1)

    return head, predictions()


def job_buildings(s3, bucket: str, items: Iterable[dict], options: OutlineOptions | None = None,
                  progress: Callable[[int], None] | None = None, threads: int = 8) -> Iterator:
    """The buildings (:class:`~looking_glass.outlines.stitch.Building`, lon/lat) of the ``done``
    items among ``items`` (row-major order, e.g. :func:`~looking_glass.results.bands.job_items`),
    streamed; ``progress(n)`` is called after each done tile read. The head is the stored one: a
    job whose tiles kept the signed distance (sdt head) is outlined from it (touching buildings
    split along their neck), else from the masks; the rest of ``options`` applies. Raises
    :class:`~looking_glass.results.masks.MaskError` for a done tile without readable rasters."""
    return (b for _, row in job_building_rows(s3, bucket, items, options, progress, threads) for b in row)


def job_building_rows(s3, bucket: str, items: Iterable[dict], options: OutlineOptions | None = None,
                      progress: Callable[[int], None] | None = None,
                      threads: int = 8) -> Iterator[tuple[int | None, list]]:
    """:func:`job_buildings` grouped as :func:`~looking_glass.outlines.stitch.outline_rows`
    yields them: ``(final_row, buildings)``, every building touching a tile row above
    ``final_row`` yielded by then (None at the end)."""
    head, predictions = _predictions(s3, bucket, items, progress, threads)
    if head is None:
        return iter([(None, [])])
    return outline_rows(predictions, replace(options or OutlineOptions(), head=head))


def writer_for(fmt: str, meta: dict | None = None):
    """The writer of export format ``fmt`` (a key of :data:`EXPORT_FORMATS`): a function of
    (buildings, path) that writes them, with the file-level metadata ``meta``
    (:meth:`Provenance.metadata`), and returns their count; ``.osm`` ways get :func:`osm_tags`."""
    if fmt == "geojson":
        return lambda buildings, path: write_geojson(buildings, path, meta)
    if fmt == "osm":
        return lambda buildings, path: write_osm(buildings, path, tags=osm_tags, meta=meta)
    driver = {"gpkg": "GPKG", "fgb": "FlatGeobuf"}[fmt]
    return lambda buildings, path: write_vector(buildings, path, driver=driver, meta=meta)


def check_out_path(path: str) -> Path:
    """``--out`` as a Path that can be written (checked before any work): not a folder, and its
    folder writable where it exists (a missing one is made when the file is written, as for every
    command's output: ``looking_glass.runtime.atomic``); ExportError otherwise."""
    out = Path(path)
    if out.is_dir():
        raise ExportError(f"--out {path} is a folder; give a file name")
    folder = out.parent
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"--out {path}: {folder} is a file, not a folder")
    if folder.is_dir() and not os.access(folder, os.W_OK):
        raise ExportError(f"--out {path}: folder {folder} is not writable")
    return out


def export_buildings(store: ResultsStore, s3, bucket: str, job_id: str, out: str, fmt: str,
                     options: OutlineOptions | None = None, progress=None, band_zoom: int = BAND_ZOOM,
                     attribution: str = "") -> ExportReport:
    """Write the buildings of job ``job_id`` to ``out`` in ``fmt`` (one of :data:`EXPORT_FORMATS`).

    The file is written under a temporary name beside ``out`` and renamed at the end, so an error
    leaves no partial file (and an existing ``out`` untouched). ``progress``: an object with
    ``total`` (set to the number of done tiles) and ``update(n)``, e.g. a tqdm bar. ``band_zoom``:
    tiles are read a row of zoom-``band_zoom`` tiles at a time (:mod:`~looking_glass.results.bands`). Raises
    ExportError (unknown job, unusable ``out``, a done tile's mask missing or unreadable).
    Every building carries its :class:`Provenance` (``attribution``: the imagery's registered
    credit, in the file's metadata)."""
    target = check_out_path(out)
    job = job_record(store, job_id)
    if progress is not None:
        progress.total = int(job.get("tiles_done", 0))  # the job's counter, exactly once per tile
    tally, sources = TileTally(), TileSources()
    provenance = Provenance.of_job({"job_id": job_id, **job}, attribution)
    try:
        with atomic_output(target) as tmp:  # the permissions of a new file in every format
            items = sources.through(tally.through(job_items(store, job_id, band_zoom)))
            rows = job_building_rows(s3, bucket, items, options, progress.update if progress is not None else None)
            buildings = (b for _, row in sourced_rows(rows, sources, provenance) for b in row)
            written = writer_for(fmt, provenance.metadata())(buildings, str(tmp))
    except MaskError as exc:
        raise ExportError(f"job {job_id}: {exc}; nothing written", exit_code=1) from None
    total = int(job.get("tiles_total", tally.items))
    return ExportReport(
        job_id=job_id, status=str(job.get("status")), buildings=written, tiles_total=total, tiles_done=tally.done,
        tiles_not_done=tally.items - tally.done, tiles_pending=max(total - tally.items, 0),
        building_count=tally.building_count,
        not_done={k: n for k, n in tally.statuses.items() if k != TILE_DONE},
    )

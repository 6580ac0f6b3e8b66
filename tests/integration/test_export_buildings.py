"""looking_glass.results.buildings: a job's buildings from its stored masks (moto S3 + DynamoDB),
stitched across tiles, in every export format; incomplete jobs, missing masks, bad outputs."""

from __future__ import annotations

import json
import os
import stat
import warnings
import xml.etree.ElementTree as ET
from decimal import Decimal

import numpy as np
import pytest
import shapely

from looking_glass.grid import quadkey
from looking_glass.model.segmenter import building_area_m2
from looking_glass.outlines.layers import read_polygons
from looking_glass.outlines.vectorize import stored_building_count
from looking_glass.pipeline.store import COMPLETE, RUNNING, ResultsStore, TileResult
from looking_glass.pipeline.table import area_decimal
from looking_glass.pipeline.unit_results import encode_unit_result, result_key
from looking_glass.results.buildings import ExportError, export_buildings, export_format

X0, Y0, S = 152_024, 131_478, 256
JOB = "feedfeedfeedfeedfeedfeed"


def mosaic() -> np.ndarray:
    """3 x 2 tiles: five buildings, two of them cut by tile edges (one across four tiles)."""
    m = np.zeros((2 * S, 3 * S), bool)
    m[20:60, 20:80] = True
    m[230:290, 230:290] = True  # across four tiles
    m[100:140, 490:540] = True  # across tiles (1, 0) and (2, 0)
    m[300:360, 300:380] = True
    m[400:450, 600:700] = True
    return m


def put_job(aws, tiles, total=None, masks=True, mosaic_of=None, dates=None, provenance=None, job=None):
    """A job whose workers stored ``tiles`` ({(dx, dy): status}) of :func:`mosaic`: one result
    object per row of tiles (as a worker stores a work unit) and each done tile's building_count;
    ``dates``: {(dx, dy): capture_date}, ``provenance``: the workers' (default a model "m"),
    ``job``: more fields of the job record."""
    session, names, resources = aws
    store = ResultsStore(session.client("dynamodb"), names.results_table)
    s3 = session.client("s3")
    store.create_job(JOB, {"status": RUNNING, "tiles_total": total or len(tiles), **(job or {})})
    m = mosaic() if mosaic_of is None else mosaic_of
    sdt = None
    if m.dtype != bool:  # a signed distance (sdt head): masks are where it is positive
        sdt, m = m, m > 0
    results = []
    for dy in sorted({dy for _, dy in tiles}):
        row = [(dx, status) for (dx, d), status in sorted(tiles.items()) if d == dy]
        done = [dx for dx, status in row if status == "done"]
        qks = [quadkey(X0 + dx, Y0 + dy, 18) for dx in done]
        cut = [m[dy * S:(dy + 1) * S, dx * S:(dx + 1) * S] for dx in done]
        key = result_key(JOB, f"row{dy}", qks, whole_unit=True) if masks else None
        sdt_cut = None if sdt is None else [sdt[dy * S:(dy + 1) * S, dx * S:(dx + 1) * S] for dx in done]
        if masks and done:
            body = encode_unit_result(JOB, f"row{dy}", [(X0 + dx, Y0 + dy, 18) for dx in done], qks, np.stack(cut),
                                      None if sdt is None else np.stack(sdt_cut))
            s3.put_object(Bucket=resources.masks_bucket, Key=key, Body=body)
        for dx, status in row:
            x, y = X0 + dx, Y0 + dy
            count, area = None, Decimal(0)
            if status == "done":  # the worker's figures: its count and the mask's pixel area
                k = done.index(dx)
                count = stored_building_count(cut[k], None if sdt is None else sdt_cut[k], 18, x, y)
                area = area_decimal(building_area_m2(cut[k], x, y, 18))
            results.append(TileResult(x, y, 18, quadkey(x, y, 18), status, area, 0,
                                      mask_key=key if status == "done" else None, building_count=count,
                                      capture_date=(dates or {}).get((dx, dy))))
    store.record_tiles(JOB, results, provenance or {"model_id": "m"})
    store.try_complete(JOB)
    return store, s3, resources.masks_bucket


ALL = {(dx, dy): "done" for dx in range(3) for dy in range(2)}


@pytest.mark.parametrize("fmt", ["geojson", "gpkg", "fgb"])
def test_a_complete_job_exports_each_building_once_and_matches_its_building_count(aws, tmp_path, fmt):
    store, s3, bucket = put_job(aws, ALL)
    out = tmp_path / f"b.{fmt}"
    report = export_buildings(store, s3, bucket, JOB, str(out), fmt)
    assert report.buildings == 5 == report.building_count
    assert report.tiles_done == 6 and report.tiles_missing == 0 and report.missing_note() is None
    layer = read_polygons(out)
    assert len(layer) == 5
    # Pixel sizes 40x50, 40x60, 60x60 (four tiles), 60x80, 50x100: the same shapes (lon/lat areas
    # at one latitude are proportional to pixel areas), the cut ones whole.
    areas = np.sort([g.area for g in layer.lonlat()])
    assert areas / areas[0] == pytest.approx([1, 1.2, 1.8, 2.4, 2.5], rel=0.01)
    assert not list(tmp_path.glob(".b.*"))  # no temporary file left


def test_a_job_of_the_sdt_head_is_outlined_from_its_stored_signed_distance(aws, tmp_path):
    from looking_glass.datasets.labels import signed_distance_m

    m = np.zeros((S, 2 * S), bool)
    m[60:120, 40:100] = True  # two 60 x 60 px buildings joined by a 10 px neck:
    m[60:120, 112:172] = True  # one region of the mask, two buildings by their distance peaks
    m[85:95, 100:112] = True
    m[150:200, 220:300] = True  # and one across the tile edge at column 256
    sdt = signed_distance_m(m.astype(np.uint8), 0.6, 10.0).astype(np.float32)
    store, s3, bucket = put_job(aws, {(0, 0): "done", (1, 0): "done"}, mosaic_of=sdt)
    report = export_buildings(store, s3, bucket, JOB, str(tmp_path / "sdt.geojson"), "geojson")
    assert report.buildings == 3 == report.building_count


def test_the_same_mask_without_a_signed_distance_is_two_buildings(aws, tmp_path):
    m = np.zeros((S, 2 * S), bool)
    m[60:120, 40:100] = True
    m[60:120, 112:172] = True
    m[85:95, 100:112] = True
    m[150:200, 220:300] = True
    store, s3, bucket = put_job(aws, {(0, 0): "done", (1, 0): "done"}, mosaic_of=m)
    report = export_buildings(store, s3, bucket, JOB, str(tmp_path / "binary.geojson"), "geojson")
    assert report.buildings == 2 == report.building_count


def test_osm_export_is_josm_xml_with_new_objects(aws, tmp_path):
    store, s3, bucket = put_job(aws, ALL)
    out = tmp_path / "b.osm"
    assert export_buildings(store, s3, bucket, JOB, str(out), "osm").buildings == 5
    root = ET.parse(out).getroot()
    ways = root.findall("way")
    assert len(ways) == 5 and all(int(w.get("id")) < 0 for w in ways)
    assert all({t.get("k"): t.get("v") for t in w.findall("tag")}["building"] == "yes" for w in ways)
    # Read back as the mapped reference (negative ids, as JOSM saves a layer not yet uploaded),
    # the export is every predicted building, all mapped.
    from looking_glass.results.gap import job_gap

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no mapped building" warning, no skipped feature
        s = job_gap(store, s3, bucket, JOB, str(out)).summary
    assert (s["predicted_count"], s["mapped_count"]) == (5, 5)
    assert s["completeness"] == pytest.approx(1.0, abs=1e-3) and s["unmapped_area_m2"] < 1e-3 * s["predicted_area_m2"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_format_gets_the_permissions_of_a_new_file(aws, tmp_path, umask):
    # .geojson/.osm were written 0600 (mkstemp), .gpkg/.fgb 0644 (GDAL recreates the file)
    store, s3, bucket = put_job(aws, ALL)
    old = os.umask(umask)
    try:
        for fmt in ("geojson", "osm", "gpkg", "fgb"):
            out = tmp_path / f"b.{fmt}"
            out.write_text("an older export")
            os.chmod(out, 0o600)
            assert export_buildings(store, s3, bucket, JOB, str(out), fmt).buildings == 5
            assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask, fmt
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.fgb", "b.geojson", "b.gpkg", "b.osm"]


def test_an_incomplete_job_exports_what_is_done_and_says_what_is_missing(aws, tmp_path):
    tiles = {(0, 0): "done", (1, 0): "done", (0, 1): "failed", (1, 1): "no_imagery"}
    store, s3, bucket = put_job(aws, tiles, total=6)
    report = export_buildings(store, s3, bucket, JOB, str(tmp_path / "b.geojson"), "geojson")
    assert report.tiles_done == 2 and report.tiles_not_done == 2 and report.tiles_pending == 2
    assert report.tiles_missing == 4 and report.status == RUNNING
    assert report.missing_note() == (f"job {JOB} is RUNNING: 4 of 6 tiles are not in the export (2 without a result "
                                     "yet, 1 failed, 1 without imagery); export again when the job is complete")
    doc = json.loads((tmp_path / "b.geojson").read_text())
    # Tiles (0, 0) and (1, 0): the building inside (0, 0), the north half of the four-tile one,
    # and the west part of the one cut at x = 512 (its east part is in tile (2, 0), not done).
    assert len(doc["features"]) == report.buildings == 3 == report.building_count


def test_a_complete_job_without_any_imagery_says_there_is_nothing_to_export(aws, tmp_path):
    # The trial's case: every tile "no imagery", the job COMPLETE; not "export again when complete".
    store, s3, bucket = put_job(aws, {(dx, dy): "no_imagery" for dx in range(3) for dy in range(2)})
    report = export_buildings(store, s3, bucket, JOB, str(tmp_path / "b.geojson"), "geojson")
    assert report.status == COMPLETE and report.buildings == 0 and report.tiles_missing == 6
    assert report.missing_note() == (f"job {JOB} is COMPLETE: no tile of it has a result to export (6 without "
                                     "imagery, of 6 tiles): the export holds no buildings")
    assert json.loads((tmp_path / "b.geojson").read_text())["features"] == []


def test_a_complete_job_with_failed_tiles_points_at_retry(aws, tmp_path):
    tiles = {**ALL, (2, 1): "failed", (2, 0): "skipped"}
    store, s3, bucket = put_job(aws, tiles)
    report = export_buildings(store, s3, bucket, JOB, str(tmp_path / "b.geojson"), "geojson")
    assert report.status == COMPLETE and report.tiles_done == 4
    assert report.missing_note() == (f"job {JOB} is COMPLETE: 2 of 6 tiles are not in the export: they ended without "
                                     "a result (1 failed, 1 skipped (no data in the imagery)); "
                                     f"`looking-glass retry {JOB}` runs the failed ones again")


def test_unknown_job_missing_masks_and_bad_outputs_are_clear_errors(aws, tmp_path):
    store, s3, bucket = put_job(aws, ALL, masks=False)
    with pytest.raises(ExportError, match="no job 'nope'"):
        export_buildings(store, s3, bucket, "nope", str(tmp_path / "b.geojson"), "geojson")
    old = tmp_path / "keep.geojson"
    old.write_text("previous export")
    with pytest.raises(ExportError, match="has no stored mask.*nothing written"):  # LG_WRITE_MASKS=false
        export_buildings(store, s3, bucket, JOB, str(old), "geojson")
    assert old.read_text() == "previous export" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(ExportError, match="keep.geojson is a file, not a folder"):  # a missing folder is made
        export_buildings(store, s3, bucket, JOB, str(old / "b.geojson"), "geojson")
    with pytest.raises(ExportError, match="is a folder"):
        export_buildings(store, s3, bucket, JOB, str(tmp_path), "geojson")


@pytest.mark.parametrize(("path", "fmt", "expected"), [
    ("a.geojson", None, "geojson"), ("a.GPKG", None, "gpkg"), ("a.fgb", None, "fgb"), ("a.osm", None, "osm"),
    ("a.json", "geojson", "geojson"), ("buildings", "gpkg", "gpkg"),
])
def test_format_from_the_name_or_the_option(path, fmt, expected):
    assert export_format(path, fmt) == expected


@pytest.mark.parametrize(("path", "fmt", "message"), [
    ("a.txt", None, "cannot tell the format"), ("a.gpkg", "geojson", "names a gpkg file but --format is geojson"),
    ("a.geojson", "shp", "unknown format"),
])
def test_bad_format_choices(path, fmt, message):
    with pytest.raises(ExportError, match=message):
        export_format(path, fmt)


# ---- the mapping gap of a job (results --compare) --------------------------------------------------
def _mapped_file(path, polygons, crs=None, extra=()):
    """A GeoJSON of ``polygons`` (lon/lat), in EPSG:3857 with the legacy ``crs`` member when
    ``crs`` is given; ``extra`` are raw features appended."""
    from looking_glass.outlines.layers import to_crs

    geoms = to_crs(np.array(polygons, dtype=object), "EPSG:4326", crs) if crs else polygons
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": json.loads(shapely.to_geojson(g))} for g in geoms] + list(extra)}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return str(path)


def test_the_gap_of_a_job_against_a_partly_mapped_layer_in_another_crs(aws, tmp_path):
    from looking_glass.results.bands import job_items
    from looking_glass.results.buildings import job_buildings
    from looking_glass.results.gap import job_gap, render_gap
    from looking_glass.results.gapmap import write_gap_map

    store, s3, bucket = put_job(aws, ALL)
    items = job_items(store, JOB)
    predicted = list(job_buildings(s3, bucket, items))
    by_size = sorted(predicted, key=lambda b: b.area_m2)
    mapped = [by_size[0].polygon, by_size[2].polygon]  # the 40x50 px and the four-tile 60x60 px buildings
    bowtie = {"type": "Feature", "properties": {"id": "bad"}, "geometry": {"type": "Polygon", "coordinates": [[
        [0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}
    path = _mapped_file(tmp_path / "osm.geojson", mapped, crs="EPSG:3857", extra=[bowtie])
    with pytest.warns(UserWarning, match="Self-intersection"):
        gap = job_gap(store, s3, bucket, JOB, path)
    s = gap.summary
    assert (s["predicted_count"], s["mapped_count"], s["tiles_compared"]) == (5, 2, 6)
    total = sum(b.area_m2 for b in predicted)
    assert s["completeness"] == pytest.approx((2000 + 3600) / (2000 + 2400 + 3600 + 4800 + 5000), rel=0.01)
    assert s["unmapped_area_m2"] == pytest.approx(total * (2400 + 4800 + 5000) / 17800, rel=0.01)
    assert len(gap.unmapped) == 3 and len(gap.skipped) == 1
    assert gap.mode == "tile" and len(gap.rows) == 6 and [r["rank"] for r in gap.rows] == [1, 2, 3, 4, 5, 6]

    (z17,) = job_gap(store, s3, bucket, JOB, path, zoom=16).rows  # all six tiles in one zoom-16 tile
    assert z17["predicted_count"] == 5 and z17["completeness"] == pytest.approx(s["completeness"])

    csv_text = render_gap("csv", gap)
    assert csv_text.splitlines()[0].startswith("quadkey,z,x,y,predicted_area_m2") and len(csv_text.splitlines()) == 7
    doc = json.loads(render_gap("geojson", gap))
    assert len(doc["features"]) == 6 and doc["summary"]["mapped_count"] == 2
    assert "completeness" in render_gap("table", gap).splitlines()[0]

    out = write_gap_map(gap, tmp_path / "map", None, "test <job>")
    page = (tmp_path / "map" / "gap.html").read_text()
    assert out["features"] == 6 and out["unmapped"] == 3 and "test &lt;job&gt;" in page
    assert len(json.loads((tmp_path / "map" / "gap-buildings.geojson").read_text())["features"]) == 3


def test_the_gap_says_how_its_predicted_totals_differ_from_results(aws, tmp_path):
    # A speck (4 px, about 1.4 m2: in the mask, so in `results`' area, but no building) and a
    # jagged building (its staircase edge simplified away): the outlines' area is smaller.
    from looking_glass.results.gap import job_gap, render_gap
    from looking_glass.results.query import query

    m = mosaic()
    m[470:472, 100:102] = True  # the speck, inside tile (0, 1)
    for k in range(40):  # a staircase edge on the building at rows 300-360
        m[300 + k, 380:380 + (k % 4)] = True
    store, s3, bucket = put_job(aws, ALL, mosaic_of=m)
    _, _, tot = query(store, JOB)
    with pytest.warns(UserWarning, match="no mapped building"):
        gap = job_gap(store, s3, bucket, JOB, _mapped_file(tmp_path / "none.geojson", []))
    s = gap.summary
    assert s["results_building_area_m2"] == float(tot["building_area_m2"]) > s["predicted_area_m2"]
    assert s["results_building_count"] == tot["building_count"]
    assert s["predicted_count"] == 5  # the speck is no building
    table = render_gap("table", gap).splitlines()
    area, count = float(tot["building_area_m2"]), tot["building_count"]
    assert table[-1] == (
        "predicted = the traced outlines `export` writes (specks under 5 m2 dropped, edges simplified, a building cut "
        "by tile edges counted once); `results` sums the workers' mask pixels and per-tile counts over the same 6 done "
        f"tiles: {area:,.0f} m2 ({s['predicted_area_m2'] - area:+,.0f} m2), {count:,} buildings ({5 - count:+,})")
    summary = next(line for line in table if line.startswith("job "))  # then a note on counts by centre, if any
    assert f"predicted 5 buildings ({s['predicted_area_m2']:,.0f} m2)" in summary
    assert json.loads(render_gap("geojson", gap))["summary"]["results_building_area_m2"] == area


@pytest.mark.parametrize("band_zoom", [18, 14])  # one tile row per band (the four-tile building read twice), one band
def test_the_gap_map_draws_each_mapped_footprint_once_as_its_own_layer(aws, tmp_path, band_zoom):
    from looking_glass.results.bands import job_items
    from looking_glass.results.buildings import job_buildings
    from looking_glass.results.gap import job_gap
    from looking_glass.results.gapmap import write_gap_map

    store, s3, bucket = put_job(aws, ALL)
    predicted = sorted(job_buildings(s3, bucket, job_items(store, JOB)), key=lambda b: b.area_m2)
    mapped = [predicted[2].polygon, predicted[0].polygon]  # the four-tile building and the smallest
    far = shapely.box(10, 10, 10.001, 10.001)  # outside the job: never drawn
    path = _mapped_file(tmp_path / "osm.geojson", [*mapped, far])
    assert job_gap(store, s3, bucket, JOB, path, band_zoom=band_zoom).mapped == []  # results --compare keeps none
    gap = job_gap(store, s3, bucket, JOB, path, band_zoom=band_zoom, keep_mapped=10)
    assert sorted(round(g.area, 14) for g in gap.mapped) == sorted(round(g.area, 14) for g in mapped)
    out = write_gap_map(gap, tmp_path / "map", None, "gap")
    page = (tmp_path / "map" / "gap.html").read_text()
    assert out["mapped"] == 2 and "mapped (compared against)" in page and "all 2 in the compared tiles" in page
    cut = job_gap(store, s3, bucket, JOB, path, band_zoom=band_zoom, keep_mapped=1)
    assert len(cut.mapped) == 1 and cut.summary["mapped_count"] == 2
    write_gap_map(cut, tmp_path / "cut", None, "gap")
    assert "the first 1 of 2 in the compared tiles" in (tmp_path / "cut" / "gap.html").read_text()


def test_an_empty_reference_leaves_everything_unmapped_and_tasks_get_rows(aws, tmp_path):
    from looking_glass.grid import tile_bounds
    from looking_glass.results.gap import job_gap

    store, s3, bucket = put_job(aws, ALL)
    path = _mapped_file(tmp_path / "empty.geojson", [])
    w, s, e, n = tile_bounds(X0, Y0, 18)
    task = {"name": "task-7", "geometry": shapely.box(w, s, e, n)}
    with pytest.warns(UserWarning, match=r"empty.geojson: no mapped building within the job's 6 done tiles") as seen:
        gap = job_gap(store, s3, bucket, JOB, path, polygons=[task])
    assert len(seen) == 1  # one line, not one per band
    assert gap.summary["completeness"] == 0.0 and gap.summary["mapped_count"] == 0
    (row,) = gap.rows
    assert row["name"] == "task-7" and row["completeness"] == 0.0
    assert row["unmapped_area_m2"] == pytest.approx(row["predicted_area_m2"])
    # Its own building and a quarter of the four-tile one, whose centre (and count) is in tile (1, 1).
    assert row["predicted_count"] == 1


def test_completeness_is_the_predicted_area_covered_not_mapped_over_predicted(aws, tmp_path):
    # Mapped: the west half of the 40x60 px building of tile (0, 0) and a 100x180 px building
    # where nothing is predicted: more mapped area (19,200 px) than predicted (17,800 px), but
    # only 1,200 px of the predicted area is mapped (the new user's "100%" with most unmapped).
    from looking_glass.grid import tile_bounds
    from looking_glass.outlines.gap import COMPLETENESS_MEANS
    from looking_glass.outlines.georef import to_lonlat
    from looking_glass.results.gap import job_gap, render_gap
    from looking_glass.results.gapmap import write_gap_map

    store, s3, bucket = put_job(aws, ALL)
    px = [shapely.box(X0 * S + c0, Y0 * S + r0, X0 * S + c1, Y0 * S + r1) for c0, r0, c1, r1 in
          [(20, 20, 50, 60), (20, 100, 200, 200)]]
    path = _mapped_file(tmp_path / "mapped.geojson", [to_lonlat(g, 18) for g in px])
    w, s, e, n = tile_bounds(X0, Y0, 18)
    task = {"name": "task-1", "geometry": shapely.box(w, s, e, n)}
    gap = job_gap(store, s3, bucket, JOB, path, tolerance_m=0)
    total = gap.summary
    assert total["mapped_area_m2"] > total["predicted_area_m2"]
    assert total["completeness"] == pytest.approx(1200 / 17800, abs=0.01)
    assert total["completeness"] == pytest.approx(1 - total["unmapped_area_m2"] / total["predicted_area_m2"])
    (row,) = job_gap(store, s3, bucket, JOB, path, polygons=[task], tolerance_m=0).rows
    # the task holds the 2,400 px building and 26x26 px of the four-tile one
    assert row["completeness"] == pytest.approx(1200 / (2400 + 26 * 26), abs=0.02)
    assert any(f"({COMPLETENESS_MEANS})" in line for line in render_gap("table", gap).splitlines())
    assert json.loads(render_gap("geojson", gap))["summary"]["completeness_means"] == COMPLETENESS_MEANS
    write_gap_map(gap, tmp_path / "map", None, "gap")
    page = (tmp_path / "map" / "gap.html").read_text()
    assert "share of the predicted building area covered by mapped buildings" in page  # the legend's words


def test_the_gap_page_draws_its_cells_and_the_buildings_not_yet_mapped_in_a_browser(aws, tmp_path):
    from conftest import CHROMIUM, browser_or_skip

    from looking_glass.results.gap import job_gap
    from looking_glass.results.gapmap import write_gap_map

    sync_playwright = browser_or_skip()
    store, s3, bucket = put_job(aws, ALL)
    from looking_glass.results.bands import job_items
    from looking_glass.results.buildings import job_buildings

    largest = max(job_buildings(s3, bucket, job_items(store, JOB)), key=lambda b: b.area_m2)
    gap = job_gap(store, s3, bucket, JOB, _mapped_file(tmp_path / "one.geojson", [largest.polygon]), keep_mapped=10)
    write_gap_map(gap, tmp_path / "map", None, "gap")
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--allow-file-access-from-files"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((tmp_path / "map" / "gap.html").as_uri())
            page.wait_for_function("window.lookingGlass && window.lookingGlass.ready", timeout=20_000)
            state = page.evaluate("window.lookingGlass")
        finally:
            browser.close()
    assert errors == [] and state["features"] == 6 and state["buildings"] == 4 and state["mapped"] == 1

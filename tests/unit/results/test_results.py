"""Rollup arithmetic on hand-made tiles: per tile, to coarser zooms, and per polygon (including
polygons that cut tiles), totals, and the three output formats. No AWS here."""

from __future__ import annotations

import json
import warnings
from decimal import Decimal

import mercantile
import pytest

from looking_glass.grid import lat_of_row_edge, quadkey, tile_bounds
from looking_glass.results.polygons import parse_polygons
from looking_glass.results.query import (
    ResultsError,
    per_tile_rows,
    render,
    rollup_rows,
    tile_ground_area_m2,
    totals,
    within_rows,
)

# A 2x2 block of zoom-18 tiles near Kigali (one zoom-17 parent) and two tiles of the next
# zoom-17 tile to the east. x0 is even, so (x0, y0)..(x0+1, y0+1) share a zoom-17 parent.
X0, Y0 = 152_024, 131_478
assert X0 % 2 == 0 and Y0 % 2 == 0


def item(x, y, status="done", area="0"):
    return {"quadkey": quadkey(x, y, 18), "status": status, "building_area_m2": Decimal(area)}


ITEMS = [
    item(X0, Y0, "done", "100.5"),
    item(X0 + 1, Y0, "done", "200.25"),
    item(X0, Y0 + 1, "failed"),
    item(X0 + 1, Y0 + 1, "no_imagery"),
    item(X0 + 2, Y0, "done", "40"),
    item(X0 + 3, Y0, "skipped"),
]
JOB = {"status": "COMPLETE", "tiles_total": 7, "tiles_final": 6, "building_area_m2": Decimal("340.750")}


def square(west, south, east, north, name):
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def polygons(*features):
    return parse_polygons(json.dumps({"type": "FeatureCollection", "features": list(features)}).encode())


def by(rows, key):
    return {r[key]: r for r in rows}


# ---- per tile and zoom rollups -------------------------------------------------------------------
def test_per_tile_rows_carry_status_counts_and_density():
    rows = by(per_tile_rows(ITEMS), "quadkey")
    first = rows[quadkey(X0, Y0, 18)]
    assert (first["x"], first["y"], first["z"]) == (X0, Y0, 18)
    assert first["tiles"] == first["tiles_done"] == 1 and first["tiles_failed"] == 0
    assert first["building_area_m2"] == Decimal("100.500")
    assert first["building_density"] == pytest.approx(100.5 / tile_ground_area_m2(Y0), rel=1e-5)
    failed = rows[quadkey(X0, Y0 + 1, 18)]
    assert failed["tiles_failed"] == 1 and failed["building_density"] is None and failed["done_area_m2"] == 0


def test_rollup_to_zoom_17_sums_by_quadkey_prefix():
    rows = rollup_rows(ITEMS, 17)
    assert [r["quadkey"] for r in rows] == sorted({quadkey(X0 // 2, Y0 // 2, 17), quadkey(X0 // 2 + 1, Y0 // 2, 17)})
    block = by(rows, "quadkey")[quadkey(X0 // 2, Y0 // 2, 17)]
    assert (block["x"], block["y"], block["z"]) == (X0 // 2, Y0 // 2, 17)
    assert block["tiles"] == 4
    assert (block["tiles_done"], block["tiles_failed"], block["tiles_no_imagery"], block["tiles_skipped"]) == (2, 1, 1, 0)
    assert block["building_area_m2"] == Decimal("300.750")
    # density over the done tiles only (both in row Y0): failures do not dilute it
    assert block["done_area_m2"] == pytest.approx(2 * tile_ground_area_m2(Y0), abs=1e-3)
    assert block["building_density"] == pytest.approx(300.75 / (2 * tile_ground_area_m2(Y0)), rel=1e-5)
    east = by(rows, "quadkey")[quadkey(X0 // 2 + 1, Y0 // 2, 17)]
    assert (east["tiles"], east["tiles_done"], east["tiles_skipped"], east["building_area_m2"]) == (2, 1, 1, Decimal("40.000"))


def test_rollup_to_coarser_zooms_keeps_the_total():
    for zoom in (0, 5, 12, 16, 18):
        rows = rollup_rows(ITEMS, zoom)
        assert sum(r["building_area_m2"] for r in rows) == Decimal("340.750")
        assert sum(r["tiles"] for r in rows) == 6
    assert len(rollup_rows(ITEMS, 0)) == 1 and rollup_rows(ITEMS, 0)[0]["quadkey"] == ""
    assert len(rollup_rows(ITEMS, 18)) == 6


def test_rollup_zoom_out_of_range_is_refused():
    with pytest.raises(ResultsError, match="between 0 and 18"):
        rollup_rows(ITEMS, 19)


def test_totals_add_the_rows_and_report_the_job_counters():
    tot = totals(rollup_rows(ITEMS, 16), JOB)
    assert tot["tiles"] == 6 and tot["tiles_done"] == 3 and tot["tiles_failed"] == 1
    assert tot["building_area_m2"] == Decimal("340.750") == tot["job_building_area_m2"]
    assert tot["job_tiles_total"] == 7 and tot["job_tiles_pending"] == 1


# ---- polygons ------------------------------------------------------------------------------------
def test_polygon_exactly_on_a_tile_gets_that_tile_only():
    w, s, e, n = tile_bounds(X0, Y0, 18)
    rows = within_rows(ITEMS, polygons(square(w, s, e, n, "one tile")))
    (row,) = rows
    assert row["name"] == "one tile"
    assert row["tiles"] == 1 and row["tiles_partial"] == 0  # neighbours only touch it
    assert row["building_area_m2"] == Decimal("100.500")
    assert row["tile_fraction"] == pytest.approx(1.0)


def test_polygon_cutting_tiles_in_half_by_longitude_and_latitude():
    w, s, e, n = tile_bounds(X0, Y0, 18)
    mid_lon = (w + e) / 2
    west_half = square(w, s, mid_lon, n, "west half")
    # the tile's mid row in mercator: half the tile's (mercator, i.e. ground) area
    mid_lat = lat_of_row_edge(Y0 + 0.5, 18)
    north_half = square(w, mid_lat, e, n, "north half")
    rows = by(within_rows(ITEMS, polygons(west_half, north_half)), "name")
    for name in ("west half", "north half"):
        r = rows[name]
        assert r["tiles"] == 1 and r["tiles_partial"] == 1 and r["tiles_done"] == 1
        assert r["tile_fraction"] == pytest.approx(0.5, abs=1e-6)
        assert float(r["building_area_m2"]) == pytest.approx(100.5 / 2, abs=0.002)
        assert r["done_area_m2"] == pytest.approx(tile_ground_area_m2(Y0) / 2, rel=1e-5)


def test_polygon_across_four_tiles_takes_a_quarter_of_each():
    # from the centre of (X0, Y0) to the centre of (X0+1, Y0+1)
    w0, _, e0, n0 = tile_bounds(X0, Y0, 18)
    w1, s1, e1, _ = tile_bounds(X0 + 1, Y0 + 1, 18)
    lat_top, lat_bottom = lat_of_row_edge(Y0 + 0.5, 18), lat_of_row_edge(Y0 + 1.5, 18)
    feature = square((w0 + e0) / 2, lat_bottom, (w1 + e1) / 2, lat_top, "centre block")
    (row,) = within_rows(ITEMS, polygons(feature))
    assert row["tiles"] == 4 and row["tiles_partial"] == 4
    assert (row["tiles_done"], row["tiles_failed"], row["tiles_no_imagery"]) == (2, 1, 1)
    assert row["tile_fraction"] == pytest.approx(1.0, abs=1e-6)
    assert float(row["building_area_m2"]) == pytest.approx((100.5 + 200.25) / 4, abs=0.002)
    assert row["done_area_m2"] == pytest.approx(2 * tile_ground_area_m2(Y0) / 4, rel=1e-5)


def test_triangle_cutting_a_tile_on_its_diagonal_and_a_polygon_with_a_hole():
    w, s, e, n = tile_bounds(X0 + 1, Y0, 18)
    triangle = {"type": "Feature", "properties": {"name": "triangle"},
                "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, s]]]}}
    # the 2x1 block (X0, Y0), (X0+1, Y0) with tile (X0, Y0) cut out as a hole
    bw, bs, be, bn = tile_bounds(X0, Y0, 18)
    holed = {"type": "Feature", "properties": {"name": "holed"}, "geometry": {"type": "Polygon", "coordinates": [
        [[bw, bs], [e, bs], [e, bn], [bw, bn], [bw, bs]],
        [[bw + (be - bw) * 0.25, lat_of_row_edge(Y0 + 0.75, 18)], [bw + (be - bw) * 0.75, lat_of_row_edge(Y0 + 0.75, 18)],
         [bw + (be - bw) * 0.75, lat_of_row_edge(Y0 + 0.25, 18)], [bw + (be - bw) * 0.25, lat_of_row_edge(Y0 + 0.25, 18)],
         [bw + (be - bw) * 0.25, lat_of_row_edge(Y0 + 0.75, 18)]],
    ]}}
    rows = by(within_rows(ITEMS, polygons(triangle, holed)), "name")
    # a lon/lat-straight diagonal is within a few millionths of straight in mercator at this size
    assert rows["triangle"]["tile_fraction"] == pytest.approx(0.5, abs=1e-5)
    assert float(rows["triangle"]["building_area_m2"]) == pytest.approx(200.25 / 2, abs=0.01)
    assert rows["holed"]["tile_fraction"] == pytest.approx(1.75, abs=1e-6)
    assert float(rows["holed"]["building_area_m2"]) == pytest.approx(100.5 * 0.75 + 200.25, abs=0.002)


def test_polygon_away_from_the_tiles_gets_a_zero_row():
    (row,) = within_rows(ITEMS, polygons(square(10, 10, 10.01, 10.01, "elsewhere")))
    assert row["tiles"] == 0 and row["building_area_m2"] == 0 and row["building_density"] is None


def test_unnamed_polygons_are_named_by_id_or_position():
    w, s, e, n = tile_bounds(X0, Y0, 18)
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    polys = parse_polygons(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "district-7", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}},
        {"type": "Feature", "properties": None, "geometry": {"type": "Polygon", "coordinates": [ring]}},
    ]}).encode())
    assert [p["name"] for p in polys] == ["district-7", "polygon 2"]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xfe", "not GeoJSON text"),
        (b"{nope", "not GeoJSON text"),
        (b"[1, 2]", r"not GeoJSON \(no 'type' member\)"),
        (b'{"type": "FeatureCollection"}', "has no features"),
        (b'{"type": "FeatureCollection", "features": []}', "has no features"),
        # The shared footprint rule (datasets.feature_tally): refused only when no polygon is left.
        (json.dumps({"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 2]}}).encode(),
         "no usable building polygon in it, no polygon to total the results within .*1 Point: feature 0: a Point"),
        (json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}).encode(),
         "(?i)no usable.*self-intersection"),
        (json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}).encode(), "feature 0: invalid Polygon"),
    ],
)
def test_bad_polygon_files_are_refused_with_the_reason(data, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped features' line comes before the refusal
        with pytest.raises(ResultsError, match=message):
            parse_polygons(data)


# ---- formats -------------------------------------------------------------------------------------
def test_geojson_is_a_feature_collection_of_cells_with_totals():
    rows = rollup_rows(ITEMS, 17)
    doc = json.loads(render("geojson", "zoom", rows, totals(rows, JOB), "ab" * 12))
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 2
    f = doc["features"][0]
    x, y = f["properties"]["x"], f["properties"]["y"]
    b = mercantile.bounds(x, y, 17)
    assert f["geometry"]["coordinates"][0][0] == [b.west, b.south]
    assert doc["totals"]["building_area_m2"] == 340.75 and doc["job_id"] == "ab" * 12


def test_geojson_within_carries_the_user_polygons():
    w, s, e, n = tile_bounds(X0, Y0, 18)
    rows = within_rows(ITEMS, polygons(square(w, s, e, n, "a")))
    doc = json.loads(render("geojson", "within", rows, totals(rows, JOB), "ab" * 12))
    assert doc["features"][0]["geometry"]["type"] == "Polygon"
    assert doc["features"][0]["properties"]["name"] == "a"


def test_table_lists_rows_then_totals():
    rows = per_tile_rows(ITEMS)
    text = render("table", "tile", rows, totals(rows, JOB), "ab" * 12)
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["quadkey", "z", "x", "y", "status"]
    assert sum(quadkey(X0, Y0, 18) in line for line in lines) == 1
    assert "TOTAL" in lines[-2] and "340.8" in lines[-2]
    assert "6/7 tiles final, 1 pending" in lines[-1]


def test_unknown_format_is_refused():
    with pytest.raises(ResultsError, match="unknown format"):
        render("xlsx", "tile", [], totals([], JOB), "ab" * 12)

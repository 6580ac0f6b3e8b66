"""``building_count`` in results: per tile, rolled up by zoom and per polygon, in totals and in
every output format; unknown (None) where a done tile has no count (a job run before counts)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from looking_glass.grid import quadkey, tile_bounds
from looking_glass.results.figures import results_geojson
from looking_glass.results.polygons import parse_polygons
from looking_glass.results.query import (
    format_totals,
    per_tile_rows,
    render,
    rollup_rows,
    totals,
    within_rows,
)

X0, Y0 = 152_024, 131_478  # a 2x2 block with one zoom-17 parent (X0, Y0 even)
JOB = {"status": "COMPLETE", "tiles_total": 5, "tiles_final": 5, "building_area_m2": Decimal("60")}


def item(x, y, status="done", count=None):
    out = {"quadkey": quadkey(x, y, 18), "x": x, "y": y, "z": 18, "status": status, "building_area_m2": Decimal("10")}
    if count is not None:
        out["building_count"] = Decimal(count)  # DynamoDB numbers come back as Decimal
    return out


ITEMS = [item(X0, Y0, count=3), item(X0 + 1, Y0, count=0), item(X0, Y0 + 1, count=5),
         item(X0 + 1, Y0 + 1, "failed"), item(X0 + 2, Y0, count=2)]


def test_counts_per_tile_by_zoom_and_in_totals():
    tiles = {r["quadkey"]: r["building_count"] for r in per_tile_rows(ITEMS)}
    assert tiles[quadkey(X0, Y0, 18)] == 3 and tiles[quadkey(X0 + 1, Y0 + 1, 18)] == 0  # failed: nothing counted
    z17 = {r["x"]: r["building_count"] for r in rollup_rows(ITEMS, 17)}
    assert z17 == {X0 // 2: 8, X0 // 2 + 1: 2}
    assert totals(rollup_rows(ITEMS, 17), JOB)["building_count"] == 10
    assert totals(per_tile_rows(ITEMS), JOB)["building_count"] == 10


def test_a_done_tile_without_a_count_makes_the_count_unknown_not_low():
    items = [*ITEMS, item(X0 + 3, Y0)]  # done, no building_count
    z17 = {r["x"]: r["building_count"] for r in rollup_rows(items, 17)}
    assert z17 == {X0 // 2: 8, X0 // 2 + 1: None}
    assert totals(rollup_rows(items, 17), JOB)["building_count"] is None


def test_a_polygon_over_half_a_tile_gets_half_its_count_as_an_estimate_and_the_count_given():
    w, s, e, n = tile_bounds(X0, Y0, 18)
    mid = (w + e) / 2
    ring = [[w, s], [mid, s], [mid, n], [w, n], [w, s]]
    polys = parse_polygons(json.dumps({"type": "Polygon", "coordinates": [ring]}).encode())
    row = within_rows(ITEMS, polys)[0]
    assert abs(row["building_count_estimate"] - 1.5) < 0.01 and row["building_count"] is None  # no outlines
    (row,) = within_rows(ITEMS, polys, counts=[2])  # counted on the outlines
    assert row["building_count"] == 2 and abs(row["building_count_estimate"] - 1.5) < 0.01
    tot = totals([row], JOB)
    assert tot["building_count"] == 2 and abs(tot["building_count_estimate"] - 1.5) < 0.01
    line = list(csv.DictReader(io.StringIO(format_totals("csv", tot))))[0]
    assert line["building_count"] == "2" and line["building_count_estimate"] == "1.5"
    header = render("table", "within", [row], tot, "job").splitlines()[0].split()
    assert header.index("building_count_estimate") == header.index("building_count") + 3  # after the density


def test_counts_in_csv_table_geojson_and_results_geojson():
    rows = per_tile_rows(ITEMS)
    tot = totals(rows, JOB)
    lines = list(csv.DictReader(io.StringIO(render("csv", "tile", rows, tot, "job"))))
    assert sum(int(r["building_count"] or 0) for r in lines) == 10
    assert list(csv.DictReader(io.StringIO(format_totals("csv", tot))))[0]["building_count"] == "10"
    assert "building_count" in render("table", "tile", rows, tot, "job").splitlines()[0]
    doc = json.loads(render("geojson", "tile", rows, tot, "job"))
    assert sum(f["properties"]["building_count"] for f in doc["features"]) == 10
    assert doc["totals"]["building_count"] == 10
    per_tile = {f["properties"]["quadkey"]: f["properties"]["building_count"] for f in results_geojson(ITEMS)["features"]}
    assert per_tile[quadkey(X0, Y0 + 1, 18)] == 5 and per_tile[quadkey(X0 + 1, Y0 + 1, 18)] is None

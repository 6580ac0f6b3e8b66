"""CSV output: one line per tile, cell or polygon (no TOTAL line), each with its place (centre
lon/lat, WKT polygon); the same numbers as the table; the totals on their own (``--totals``)."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import pytest
import shapely
from test_results import ITEMS, JOB, X0, Y0, polygons, square

from looking_glass.grid import lat_of_row_edge, tile_bounds
from looking_glass.results.query import (
    COLUMNS,
    TOTAL_COLUMNS,
    ResultsError,
    per_tile_rows,
    render,
    rollup_rows,
    totals,
    within_rows,
)


def _west_half_and_block():
    w, s, e, n = tile_bounds(X0, Y0, 18)
    _, s1, e1, _ = tile_bounds(X0 + 1, Y0 + 1, 18)
    return polygons(square(w, s1, (w + e) / 2, n, "west-half"), square(w, s1, e1, n, "block"))


def _modes():
    return {
        "tile": per_tile_rows(ITEMS),
        "zoom": rollup_rows(ITEMS, 17),
        "within": within_rows(ITEMS, _west_half_and_block()),
    }


def _csv(mode, rows):
    return list(csv.DictReader(io.StringIO(render("csv", mode, rows, totals(rows, JOB), "ab" * 12))))


def _table(mode, rows):
    """The table's data lines (between its two rules) as dicts, cut at the rule's column spans."""
    lines = render("table", mode, rows, totals(rows, JOB), "ab" * 12).splitlines()
    header = lines[0].split()
    rules = [i for i, line in enumerate(lines) if set(line) <= {"-", " "}]
    spans = [m.span() for m in re.finditer(r"-+", lines[rules[0]])]
    assert len(spans) == len(header)
    return [{h: line[a:b].strip() for h, (a, b) in zip(header, spans)} for line in lines[rules[0] + 1:rules[1]]]


@pytest.mark.parametrize("mode", ["tile", "zoom", "within"])
def test_csv_has_one_line_per_row_and_no_total_line(mode):
    rows = _modes()[mode]
    table = _csv(mode, rows)
    assert len(table) == len(rows) > 0
    assert list(table[0]) == [*COLUMNS[mode], "lon", "lat", "geometry"]
    assert all("TOTAL" not in line.values() for line in table)


@pytest.mark.parametrize("mode", ["tile", "zoom", "within"])
def test_csv_numbers_equal_the_tables(mode):
    rows = _modes()[mode]
    table, data = _table(mode, rows), _csv(mode, rows)
    assert len(table) == len(data)
    compared = 0
    for shown, full in zip(table, data):
        for col, cell in shown.items():
            if col in ("quadkey", "name", "status", "reason", "capture_date") or cell == "":
                continue
            if not full[col]:
                pytest.fail(f"{col}: the table shows {cell}, the CSV is empty")
            cell = cell.replace(",", "")  # the table's thousands separators
            decimals = len(cell.split(".")[1]) if "." in cell else 0
            # the table rounds half to even: a half unit off (plus float noise) is the most it may be
            assert float(full[col]) == pytest.approx(float(cell), abs=0.5 * 10**-decimals + 1e-9), (col, cell, full[col])
            compared += 1
    assert compared >= len(table) * 8


def test_csv_places_each_tile_and_cell():
    for mode, rows in (("tile", per_tile_rows(ITEMS)), ("zoom", rollup_rows(ITEMS, 17))):
        for line in _csv(mode, rows):
            x, y, z = int(line["x"]), int(line["y"]), int(line["z"])
            w, s, e, n = tile_bounds(x, y, z)
            geometry = shapely.from_wkt(line["geometry"])
            assert geometry.geom_type == "Polygon"
            assert geometry.bounds == pytest.approx((w, s, e, n), abs=1e-9)
            assert float(line["lon"]) == pytest.approx((w + e) / 2, abs=1e-7)
            assert float(line["lat"]) == pytest.approx(float(lat_of_row_edge(y + 0.5, z)), abs=1e-7)
            assert s < float(line["lat"]) < n


def test_csv_places_each_polygon_by_its_centroid():
    rows = within_rows(ITEMS, _west_half_and_block())
    for row, line in zip(rows, _csv("within", rows)):
        geometry = shapely.from_wkt(line["geometry"])
        assert geometry.equals_exact(row["geometry"], tolerance=1e-9)
        assert (float(line["lon"]), float(line["lat"])) == pytest.approx(
            (row["geometry"].centroid.x, row["geometry"].centroid.y), abs=1e-7)


def test_totals_are_their_own_output():
    rows = rollup_rows(ITEMS, 17)
    tot = totals(rows, JOB)
    (line,) = list(csv.DictReader(io.StringIO(render("csv", "zoom", rows, tot, "ab" * 12, totals_only=True))))
    assert list(line) == list(TOTAL_COLUMNS)
    assert float(line["building_area_m2"]) == 340.75 == sum(float(r["building_area_m2"]) for r in rows)
    assert int(line["tiles_failed"]) == 1 and int(line["job_tiles_pending"]) == 1 and line["job_status"] == "COMPLETE"
    text = render("table", "zoom", rows, tot, "ab" * 12, totals_only=True)
    pairs = dict(line.split(None, 1) for line in text.splitlines())
    assert list(pairs) == list(TOTAL_COLUMNS) and pairs["building_area_m2"] == "340.750"
    with pytest.raises(ResultsError, match="--totals with --format geojson"):
        render("geojson", "zoom", rows, tot, "ab" * 12, totals_only=True)
    assert json.loads(render("geojson", "zoom", rows, tot, "ab" * 12))["totals"]["building_area_m2"] == 340.75


def test_totals_agree_across_modes_to_the_last_digit():
    # 40 x 40 tiles at a latitude where each tile's ground area has many decimals: summing rows
    # already rounded to 1 mm2 would drift by up to 0.5 mm2 a row.
    from looking_glass.grid import quadkey
    from looking_glass.results.query import tile_ground_area_m2

    items = [{"quadkey": quadkey(X0 + dx, Y0 + dy, 18), "status": "done", "building_area_m2": Decimal("1.5")}
             for dx in range(40) for dy in range(40)]
    exact = round(sum(tile_ground_area_m2(Y0 + dy) for dy in range(40)) * 40, 3)
    per_tile = totals(per_tile_rows(items), JOB)
    for zoom in (17, 16, 14, 10):
        assert totals(rollup_rows(items, zoom), JOB)["done_area_m2"] == per_tile["done_area_m2"] == exact
    assert "_done_area_m2" not in _csv("tile", per_tile_rows(items))[0]

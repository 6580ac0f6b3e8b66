"""Densities use each tile's valid_fraction (the share holding imagery), and rows carry the
imagery's capture dates: per tile, rolled up, per polygon, in every format."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from looking_glass.grid import quadkey
from looking_glass.pipeline.store import TileResult, fraction_decimal
from looking_glass.results.figures import results_geojson
from looking_glass.results.query import per_tile_rows, render, rollup_rows, tile_ground_area_m2, totals

X0, Y0 = 152_024, 131_478
JOB = {"status": "COMPLETE", "tiles_total": 3, "tiles_final": 3, "building_area_m2": Decimal("300")}


def item(x, area, fraction=None, date=None, status="done"):
    out = {"quadkey": quadkey(x, Y0, 18), "x": x, "y": Y0, "z": 18, "status": status, "building_area_m2": Decimal(area)}
    if fraction is not None:
        out["valid_fraction"] = Decimal(fraction)
    if date is not None:
        out["capture_date"] = date
    return out


ITEMS = [
    item(X0, "100", "1", "2023-06-01"),
    item(X0 + 1, "100", "0.5", "2023-06-01,2020-01-02"),  # an edge tile: half outside the image
    item(X0 + 2, "100"),  # a result written before valid_fraction existed: a whole tile
]


def test_an_edge_tile_half_outside_the_image_is_not_diluted():
    rows = {r["x"]: r for r in per_tile_rows(ITEMS)}
    area = tile_ground_area_m2(Y0)
    assert rows[X0 + 1]["building_density"] == pytest.approx(100 / (0.5 * area), rel=1e-6)
    assert rows[X0]["building_density"] == pytest.approx(100 / area, rel=1e-6)
    assert rows[X0 + 2]["done_area_m2"] == pytest.approx(area, abs=1e-3)
    assert rows[X0 + 1]["valid_fraction"] == Decimal("0.5") and rows[X0 + 1]["capture_date"] == "2023-06-01,2020-01-02"
    assert rows[X0 + 2]["capture_date"] == ""


def test_rollups_and_totals_use_the_covered_area_and_gather_the_dates():
    rows = rollup_rows(ITEMS, 16)
    assert len(rows) == 1
    area = tile_ground_area_m2(Y0)
    assert rows[0]["done_area_m2"] == pytest.approx(2.5 * area, abs=1e-3)
    assert rows[0]["building_density"] == pytest.approx(300 / (2.5 * area), rel=1e-6)
    assert rows[0]["capture_date"] == "2023-06-01,2020-01-02"
    assert totals(rows, JOB)["building_density"] == pytest.approx(300 / (2.5 * area), rel=1e-6)


def test_formats_and_results_geojson_carry_fraction_and_date():
    rows = per_tile_rows(ITEMS)
    tot = totals(rows, JOB)
    table = list(csv.DictReader(io.StringIO(render("csv", "tile", rows, tot, "j"))))
    edge = next(r for r in table if r["x"] == str(X0 + 1))
    assert (edge["valid_fraction"], edge["capture_date"]) == ("0.5", "2023-06-01,2020-01-02")
    doc = json.loads(render("geojson", "tile", rows, tot, "j"))
    props = next(f["properties"] for f in doc["features"] if f["properties"]["x"] == X0 + 1)
    assert props["valid_fraction"] == 0.5 and props["capture_date"] == "2023-06-01,2020-01-02"
    demo = results_geojson(ITEMS)["features"]
    assert demo[1]["properties"]["valid_fraction"] == 0.5 and demo[1]["properties"]["capture_date"] == "2023-06-01,2020-01-02"
    assert "valid_fraction" not in demo[2]["properties"] and "capture_date" not in demo[2]["properties"]


def test_tile_items_store_both_only_when_known():
    with_both = TileResult(1, 2, 18, "q", "done", valid_fraction=fraction_decimal(0.123456), capture_date="2024-01-01")
    stored = with_both.item("job", {})
    assert stored["valid_fraction"] == Decimal("0.1235") and stored["capture_date"] == "2024-01-01"
    bare = TileResult(1, 2, 18, "q", "no_imagery").item("job", {})
    assert "valid_fraction" not in bare and "capture_date" not in bare

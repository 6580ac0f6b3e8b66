"""Every results row names the model that produced it (``model``: ID/VERSION from the tile
results' ``model_id``/``model_version``), in CSV and GeoJSON, and the table's last line, so
results of two jobs can be joined and told apart."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from looking_glass.grid import quadkey
from looking_glass.model.registry import run_label
from looking_glass.results.query import COLUMNS, per_tile_rows, render, rollup_rows, totals

X0, Y0 = 152_024, 131_478
JOB = {"status": "COMPLETE", "tiles_total": 3, "tiles_final": 3, "building_area_m2": Decimal("30")}


def item(x, model_id=None, version=None):
    out = {"quadkey": quadkey(x, Y0, 18), "status": "done", "building_area_m2": Decimal(10), "building_count": 1}
    if model_id is not None:
        out["model_id"] = model_id
    if version is not None:
        out["model_version"] = version
    return out


ITEMS = [item(X0, "seg", "3"), item(X0 + 1, "seg", "4"), item(X0 + 2)]  # the last: stored before models were


def test_each_tile_row_names_its_model_and_rollups_list_every_model():
    rows = {r["x"]: r["model"] for r in per_tile_rows(ITEMS)}
    assert rows == {X0: "seg/3", X0 + 1: "seg/4", X0 + 2: ""}
    (cell,) = rollup_rows(ITEMS, 16)
    assert cell["model"] == "seg/3,seg/4"
    assert totals([cell], JOB)["model"] == "seg/3,seg/4"


def test_csv_and_geojson_carry_the_model_column():
    rows = per_tile_rows(ITEMS)
    tot = totals(rows, JOB)
    table = list(csv.DictReader(io.StringIO(render("csv", "tile", rows, tot, "j"))))
    assert [r["model"] for r in table] == ["seg/3", "seg/4", ""]
    doc = json.loads(render("geojson", "tile", rows, tot, "j"))
    assert [f["properties"]["model"] for f in doc["features"]] == ["seg/3", "seg/4", ""]
    assert doc["totals"]["model"] == "seg/3,seg/4"
    for mode in ("tile", "zoom", "within"):
        assert "model" in COLUMNS[mode]
    totals_csv = next(csv.DictReader(io.StringIO(render("csv", "tile", rows, tot, "j", totals_only=True))))
    assert totals_csv["model"] == "seg/3,seg/4"


def test_the_table_names_the_model_on_its_last_line_not_in_a_column():
    rows = per_tile_rows(ITEMS[:1])
    lines = render("table", "tile", rows, totals(rows, JOB), "j").splitlines()
    assert "model" not in lines[0].split()
    assert lines[-1].endswith("model seg/3")
    bare = per_tile_rows(ITEMS[2:])
    assert render("table", "tile", bare, totals(bare, JOB), "j").splitlines()[-1].endswith("model not recorded")


def test_run_label_forms():
    assert run_label("seg", "3") == "seg/3"
    assert run_label("seg", None) == "seg"
    assert run_label(None, "3") == ""

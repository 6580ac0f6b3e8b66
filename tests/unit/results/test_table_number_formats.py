"""The results text table shows each float column alike down its rows (a new user saw 0.2470 next
to 920.478 in one area column and 0.5873 next to 1.000 in valid_fraction): areas in m2 to a tenth
with thousands separators, shares of 1 to four places, a polygon's tiles to a thousandth."""

from __future__ import annotations

from looking_glass.results.query import format_table

TOT = {"job_status": "COMPLETE", "job_tiles_total": 2, "job_tiles_pending": 0, "job_building_area_m2": 12920.478,
       "building_area_m2": 12920.725}


def _columns(text: str) -> dict[str, list[str]]:
    """The two data rows' cells by column name, cut where the rule line's dashes are."""
    import re

    lines = text.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    cut = lambda line: [line[a:b].strip() for a, b in spans]  # noqa: E731
    return {name: [cut(r)[i] for r in lines[2:4]] for i, name in enumerate(cut(lines[0]))}


def test_each_float_column_has_one_number_format():
    rows = [
        {"quadkey": "0", "z": 18, "x": 1, "y": 2, "status": "done", "tiles": 1, "building_area_m2": 12920.478,
         "building_count": 3, "done_area_m2": 5000.0, "building_density": 0.2, "valid_fraction": 1.0},
        {"quadkey": "1", "z": 18, "x": 2, "y": 2, "status": "done", "tiles": 1, "building_area_m2": 0.247,
         "building_count": 1, "done_area_m2": 4999.5, "building_density": 0.00005, "valid_fraction": 0.5873},
    ]
    text = format_table("tile", rows, TOT)
    cols = _columns(text)
    assert cols["building_area_m2"] == ["12,920.5", "0.2"]
    assert cols["done_area_m2"] == ["5,000.0", "4,999.5"]
    assert cols["valid_fraction"] == ["1.0000", "0.5873"]
    assert cols["building_density"] == ["0.2000", "0.0001"]
    assert cols["building_count"] == ["3", "1"]  # counts stay integers
    assert "12,920.7" in text.splitlines()[5]  # the TOTAL row, formatted as its column
    assert "job building area 12,920.5 m2" in text


def test_rollup_estimates_and_fractions():
    rows = [{"name": "a", "tiles": 2, "building_area_m2": 1.0, "building_count": 1, "done_area_m2": 2.0,
             "building_density": 0.5, "building_count_estimate": 1234.56, "tiles_partial": 1, "tile_fraction": 0.25},
            {"name": "b", "tiles": 1, "building_area_m2": 0.0, "building_count": 0, "done_area_m2": 1.0,
             "building_density": 0.0, "building_count_estimate": 0.0, "tiles_partial": 0, "tile_fraction": 1.0}]
    cols = _columns(format_table("within", rows, TOT))
    assert cols["building_count_estimate"] == ["1,234.6", "0.0"]
    assert cols["tile_fraction"] == ["0.250", "1.000"]  # tiles (a sum of fractions), not a share
    assert cols["building_area_m2"] == ["1.0", "0.0"]

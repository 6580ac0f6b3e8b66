"""The demo's boxed summary table: scalars formatted, nested values and figures that do not apply
(None) left out."""

from looking_glass.results.figures import summary_table


def test_the_table_shows_scalars_and_leaves_out_none_and_nested_values():
    table = summary_table({"status": "COMPLETE", "tiles_done": 1234, "building_area_m2": 16748.71,
                           "truth_area_m2": None, "area_error_pct": None, "model": {"model_id": "m"}})
    lines = table.splitlines()
    assert lines[0] == lines[-1] and lines[0].startswith("+-")
    assert "| status           | COMPLETE |" in table and "1,234" in table and "16,748.7" in table
    assert "truth_area_m2" not in table and "area_error_pct" not in table and "None" not in table
    assert "model" not in table and len(lines) == 5

"""User text shown escaped wherever printed or drawn (issue 16; tests/data/cases/aoi-control-characters)."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from conftest import TESTS_DIR  # noqa: E402

from looking_glass.display import shown  # noqa: E402
from looking_glass.results.figures import save_tile_figure  # noqa: E402
from looking_glass.results.query import format_table  # noqa: E402

NAME = json.loads((TESTS_DIR / "data" / "cases" / "aoi-control-characters" / "escape_name.geojson").read_text())["properties"]["name"]


def test_shown_escapes_control_layout_and_bidi_characters():
    text = shown(NAME + "\u202e\u2028\x00")
    assert "\x1b" not in text and "\n" not in text and "\x07" not in text
    assert "\\x1b[2J" in text and "\\u202e" in text and "\\u2028" in text and "\\x00" in text
    assert shown("Zürich 東京 $x$ \\ok") == "Zürich 東京 $x$ \\ok"  # printable text as given
    assert shown("a" * 50, 10) == "a" * 9 + "\u2026" and shown(None) == ""


@pytest.mark.parametrize("title", ["price $5 and $\\frac{", NAME, "$\\undefinedmacro$ ^_{"])
def test_figure_titles_draw_names_as_written(tmp_path, title):
    """A `$...$` name once broke `map` (matplotlib mathtext); now it is drawn as text."""
    fig, ax = plt.subplots()
    out = tmp_path / "fig.png"
    save_tile_figure(fig, ax, title, 2, 2, out)
    assert out.stat().st_size > 0


def test_result_tables_show_names_escaped():
    row = {"name": NAME, "tiles": 1, "building_area_m2": 1.0}
    tot = {"job_status": "COMPLETE", "job_tiles_total": 1, "job_tiles_pending": 0, "job_building_area_m2": 1.0}
    text = format_table("within", [row], tot)
    assert "\x1b" not in text and "legit\\x1b" in text
    assert len(text.splitlines()) == 6  # header, rule, one row, rule, total, job line: no forged line

"""map.png (looking_glass.results.mappng): imagery as sharp as the figure can show it, read at the
zoom matching the figure's pixels, fills that leave the imagery's colours, a legend entry only for
what is drawn, and a caption that tells two jobs apart."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import SPACENET_SAMPLE
from PIL import Image

from looking_glass.grid import quadkey
from looking_glass.results.basemap import source_fetcher
from looking_glass.results.figures import TILE_CMAP
from looking_glass.results.mappng import MAX_MAP_PX, NO_RESULT, imagery_zoom, map_caption, write_png

X0, Y0 = 69_555, 105_034  # a 3x3 block of zoom-18 tiles inside the SpaceNet Atlanta sample image


def rows_of(cells, z=18, status="done"):
    return [{"x": x, "y": y, "z": z, "quadkey": quadkey(x, y, z), "status": status} for x, y in cells]


def flat_tiles(rgb):
    """A fetcher whose every tile is one colour, recording the (z, x, y) asked for."""
    asked = []
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), rgb).save(buf, "PNG")

    def fetch(z, x, y):
        asked.append((z, x, y))
        return buf.getvalue()

    fetch.asked = asked
    return fetch


def cell_box(layout, i, j, margin=0.15):
    """The PNG pixels of cell (i, j) (column, row from the map's corner), ``margin`` of a cell in."""
    left, top = layout["map_box"][:2]
    px = layout["px_per_cell"]
    m = margin * px
    return (round(left + i * px + m), round(top + j * px + m), round(left + (i + 1) * px - m),
            round(top + (j + 1) * px - m))


def high_frequency(grey: np.ndarray) -> float:
    """Mean absolute 4-neighbour Laplacian over the standard deviation: how much fine detail an
    image holds for its contrast (a fill over it lowers both alike)."""
    g = grey.astype(float)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(np.abs(lap).mean() / g.std())


def test_the_imagery_is_as_sharp_as_the_zoom_18_source(tmp_path):
    # The trial's map.png read 64-px thumbnails and drew them ~280 px wide: zoom-16 detail.
    fetch = source_fetcher(str(SPACENET_SAMPLE / "image.tif"))
    cells = [(X0 + i, Y0 + j) for i in range(3) for j in range(3)]
    layout = write_png(rows_of(cells), tmp_path / "map.png", fetch, "t", [0.05] * 9, "density")
    assert layout["imagery_zoom"] == 18 and layout["px_per_cell"] >= 256 and not layout["capped"]
    png = Image.open(tmp_path / "map.png").convert("L")
    box = cell_box(layout, 1, 1)
    drawn = png.crop(box)
    src = Image.open(io.BytesIO(fetch(18, X0 + 1, Y0 + 1))).convert("L")
    px = layout["px_per_cell"]
    inner = (0.15 * 256, 0.15 * 256, 0.85 * 256, 0.85 * 256)
    source = src.resize((round(px), round(px)), Image.LANCZOS, box=(0, 0, 256, 256)).crop(
        tuple(round(v * px / 256) for v in inner)).resize(drawn.size, Image.LANCZOS)
    ratio = high_frequency(np.asarray(drawn)) / high_frequency(np.asarray(source))
    print(f"fine detail of map.png / zoom-18 source: {ratio:.2f}")
    assert ratio > 0.7, ratio  # 1.00 here; the old 64-px thumbnails kept 0.18 of it


def test_a_big_job_is_capped_and_read_at_the_zoom_its_pixels_show(tmp_path):
    fetch = flat_tiles((90, 90, 90))
    cells = [(X0 + i, Y0 + j) for i in range(40) for j in range(40)]
    layout = write_png(rows_of(cells), tmp_path / "big.png", fetch, "t", [1.0] * 1600, "density",
                       caption="imagery: x")
    assert layout["capped"] and layout["px_per_cell"] == pytest.approx(MAX_MAP_PX / 40)
    # 102 px per zoom-18 tile: zoom-17 tiles (128 px per zoom-18 tile; zoom 16's 64 px would blur)
    assert layout["imagery_zoom"] == 17 == {z for z, _, _ in fetch.asked}.pop()
    # 40x40 zoom-18 tiles in 21x20 zoom-17 ones (X0 is odd), each read once: not 1,600 reads
    assert sorted((x, y) for _, x, y in fetch.asked) == sorted({(x // 2, y // 2) for x, y in cells})
    assert len(fetch.asked) == 420
    w, h = Image.open(tmp_path / "big.png").size
    assert max(w, h) < MAX_MAP_PX + 300


@pytest.mark.parametrize(("px", "z", "want"), [(256, 18, 18), (300, 18, 18), (255, 18, 18), (129, 18, 18), (128, 18, 17),
                                               (100, 18, 17), (64, 18, 16), (40, 18, 16), (800, 15, 17), (10, 2, 0)])
def test_imagery_zoom_is_the_coarsest_with_enough_pixels(px, z, want):
    assert imagery_zoom(px, z) == want


@pytest.mark.parametrize("rgb", [(255, 255, 255), (128, 128, 128), (40, 120, 60)])
def test_a_done_tile_leaves_the_imagery_under_it_within_a_few_dn(tmp_path, rgb):
    # greyscale (white, grey) and colour imagery; the darkest and the palest colour of the scale
    from matplotlib import colormaps

    cells = [(X0, Y0), (X0 + 1, Y0)]
    layout = write_png(rows_of(cells), tmp_path / "m.png", flat_tiles(rgb), "t", [1.0, 0.0], "density")
    png = np.asarray(Image.open(tmp_path / "m.png").convert("RGB")).astype(int)
    limit = 25  # DN: the old 20% fill moved white imagery 51 DN towards dark red
    for i, value in ((0, 1.0), (1, 0.0)):
        left, top, right, bottom = cell_box(layout, i, 0, margin=0.1)
        inside = png[top:(top + bottom) // 2, left:right]  # the upper half: the scale bar is low
        assert np.abs(inside - np.array(rgb)).max() <= limit, (rgb, value, np.abs(inside - rgb).max())
        # the colour is still there: on the outline, inside the tile's own square
        colour = np.array(colormaps[TILE_CMAP](value)[:3]) * 255
        l0, t0, r0, b0 = cell_box(layout, i, 0, margin=0.0)
        edge = png[t0 + 2:b0 - 2, l0:l0 + max(4, round(0.06 * layout["px_per_cell"]))]
        assert np.abs(edge - colour).max(axis=2).min() <= 30


def test_the_legend_names_tiles_without_a_result_only_when_there_are_some(tmp_path):
    cells = [(X0, Y0), (X0 + 1, Y0)]
    assert write_png(rows_of(cells), tmp_path / "a.png", None, "t", [0.1, 0.2], "density")["legend"] == []
    failed = rows_of(cells[:1]) + rows_of(cells[1:], status="failed")
    assert write_png(failed, tmp_path / "b.png", None, "t", [0.1, None], "density")["legend"] == [NO_RESULT]


def test_the_caption_tells_the_imagery_dates_model_and_tiles():
    rows = [{"status": "done", "capture_date": "2024-05-01", "valid_fraction": 1.0},
            {"status": "done", "capture_date": "2023-02-10,2024-01-03", "valid_fraction": 0.5},
            {"status": "failed", "capture_date": ""}]
    tot = {"tiles_done": 2, "job_tiles_total": 5, "tiles_failed": 1, "tiles_no_imagery": 0, "tiles_skipped": 0,
           "job_tiles_pending": 2, "model": "unet/3"}
    text = map_caption({"imagery": "city"}, tot, rows, None, "© City of Atlanta")
    assert "imagery: city; © City of Atlanta; captured 2023-02-10 to 2024-05-01" in text
    assert "model: unet/3; 2 of 5 tiles done (failed 1, no imagery 0, skipped 0, pending 2)" in text
    assert "imagery over 75% of their ground" in text
    other = map_caption({"imagery": "osm"}, {**tot, "model": None}, [{"status": "done"}], "osm", "osm")
    assert "imagery: osm; capture date not recorded" in other and "model: not recorded" in other
    # a job on `up --imagery FILE.tif` (the default source): the file, not "imagery 'default'"
    from looking_glass.runtime.imagery_sources import parse_source_entry

    credit = parse_source_entry("default", {"source": str(SPACENET_SAMPLE / "image.tif")}).credit()
    geotiff = map_caption({"imagery": "default"}, tot, rows, "default", credit)
    assert geotiff.startswith("imagery: default; image.tif; captured") and "imagery 'default'" not in geotiff


def test_two_captions_make_two_different_pngs(tmp_path):
    cells = [(X0, Y0)]
    a = write_png(rows_of(cells), tmp_path / "a.png", None, "t", [0.1], "density", caption="imagery: city")
    write_png(rows_of(cells), tmp_path / "b.png", None, "t", [0.1], "density", caption="imagery: osm")
    pa, pb = (np.asarray(Image.open(tmp_path / f"{n}.png").convert("L")) for n in "ab")
    bottom = a["map_box"][3]
    assert (pa[:bottom] == pb[:bottom]).all() and (pa[bottom:] != pb[bottom:]).any()
    assert a["caption"] == "imagery: city\nno imagery drawn (none given, or more than 2,048 tiles to read): grey background"


@pytest.mark.parametrize(("cells", "values"), [([], []), ([(X0, Y0)], []), ([(X0, Y0)], [0.1, 0.2])])
def test_no_rows_or_a_value_missing_is_refused(tmp_path, cells, values):
    with pytest.raises(ValueError, match="one value per row"):
        write_png(rows_of(cells), tmp_path / "x.png", None, "t", values, "density")
    assert not (tmp_path / "x.png").exists()

"""The imagery under the map: which sources are written beside the page, the tiles and their
pyramid (the same imagery at every zoom), and sources that cannot be read."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import SPACENET_SAMPLE
from PIL import Image

from looking_glass.results.basemap import BasemapError, source_fetcher, wants_files, write_basemap

X0, Y0 = 152_024, 131_478  # even: (X0, Y0)..(X0+1, Y0+1) share a zoom-17 parent
ATLANTA = (69_555, 105_034)  # a zoom-18 tile inside the SpaceNet sample image


def colour_of(x, y):
    return ((x * 53) % 200 + 30, (y * 97) % 200 + 30, ((x + y) * 31) % 200 + 30)


def solid_png(x, y):
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), colour_of(x, y)).save(buf, "PNG")
    return buf.getvalue()


def fetch_solid(z, x, y):
    assert z == 18
    return solid_png(x, y)


def read(root, z, x, y):
    return np.asarray(Image.open(root / "map_tiles" / str(z) / str(x) / f"{y}.webp").convert("RGBA"), dtype=float)


def test_tiles_and_their_pyramid_are_the_same_imagery_at_every_zoom(tmp_path):
    tiles = [(X0 + dx, Y0 + dy) for dx in range(3) for dy in range(2)]
    out = write_basemap(tmp_path, tiles, fetch_solid)
    assert out["template"] == "map_tiles/{z}/{x}/{y}.webp" and out["max_zoom"] == 18
    for x, y in tiles:
        assert f"18/{x}/{y}" in out["available"]
        assert np.abs(read(tmp_path, 18, x, y)[..., :3] - colour_of(x, y)).mean() < 4
    # zoom 17: each parent's quadrants are its children, halved; no child is transparent
    parent = read(tmp_path, 17, X0 // 2, Y0 // 2)
    for dx in range(2):
        for dy in range(2):
            quadrant = parent[dy * 128 + 8:(dy + 1) * 128 - 8, dx * 128 + 8:(dx + 1) * 128 - 8]
            assert np.abs(quadrant[..., :3] - colour_of(X0 + dx, Y0 + dy)).mean() < 6
            assert quadrant[..., 3].min() == 255
    # the next parent holds only the column x0+2: its other half is transparent
    other = read(tmp_path, 17, (X0 + 2) // 2, Y0 // 2)
    assert other[:, :120, 3].min() == 255 and other[:, 136:, 3].max() == 0
    # down to the zoom where the whole job is one tile, and every level listed
    levels = {int(key.split("/")[0]) for key in out["available"]}
    assert levels == set(range(out["min_zoom"], 19))
    assert sum(key.startswith(f"{out['min_zoom']}/") for key in out["available"]) == 1
    assert out["written"] == len(out["available"]) == len(list((tmp_path / "map_tiles").rglob("*.webp")))


def test_tiles_without_imagery_leave_gaps(tmp_path):
    def fetch(z, x, y):
        if (x, y) == (X0, Y0):
            return None
        if (x, y) == (X0 + 1, Y0):
            return b"<html>not an image</html>"
        return solid_png(x, y)

    out = write_basemap(tmp_path, [(X0, Y0), (X0 + 1, Y0), (X0, Y0 + 1)], fetch)
    assert [k for k in out["available"] if k.startswith("18/")] == [f"18/{X0}/{Y0 + 1}"]
    assert write_basemap(tmp_path / "none", [(X0, Y0)], lambda z, x, y: None) is None


def test_too_many_tiles_write_nothing(tmp_path):
    assert write_basemap(tmp_path, [(X0 + i, Y0) for i in range(5)], fetch_solid, max_tiles=4) is None
    assert not (tmp_path / "map_tiles").exists()


@pytest.mark.parametrize("source, files", [
    ("tests/data/spacenet_atlanta_sample/image.tif", True),
    ("s3://bucket/scene.tif", True),
    ("http://127.0.0.1:8123/{z}/{x}/{y}.png", True),  # the embedded run's server: gone after `up`
    ("http://localhost:8123/{z}/{x}/{-y}.png", True),
    ("https://tiles.example.com/{z}/{x}/{y}.jpg?key=K", False),
])
def test_which_sources_are_written_beside_the_page(source, files):
    assert wants_files(source) is files


def test_a_geotiff_source_gives_its_tiles_and_nothing_outside():
    fetch = source_fetcher(str(SPACENET_SAMPLE / "image.tif"))
    inside = Image.open(io.BytesIO(fetch(18, *ATLANTA)))
    assert inside.size == (256, 256) and np.asarray(inside.convert("L")).std() > 5
    assert fetch(18, X0, Y0) is None


def test_a_missing_or_bad_geotiff_is_one_clear_error(tmp_path):
    with pytest.raises(BasemapError, match="imagery .*missing.tif"):
        source_fetcher(str(tmp_path / "missing.tif"))
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    with pytest.raises(BasemapError, match="bad.tif"):
        source_fetcher(str(bad))

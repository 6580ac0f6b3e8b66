"""One stretch per mosaic (imagery/mosaic_stretch.py): a 16-bit scene cut into overlapping GeoTIFFs
reads as the whole file does, the pooled percentile rule by hand, and the bad inputs."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window

from looking_glass.grid import TILE_SIZE, tile_mercator_bounds
from looking_glass.imagery.geotiff import GeoTiffTiles
from looking_glass.imagery.mosaic import MosaicError, open_geotiff_source
from looking_glass.imagery.mosaic_stretch import (
    StretchSample,
    member_sample_side,
    pooled_stretch_limits,
    weighted_percentiles,
)
from looking_glass.imagery.raster import STRETCH_SAMPLE_PX

X, Y, Z = 69554, 105033, 18
W, S, E, N = tile_mercator_bounds(X, Y, Z)
PX = (E - W) / TILE_SIZE  # metres per pixel at zoom 18 in mercator
SPACENET = Path(__file__).resolve().parents[2] / "data" / "spacenet_atlanta_sample" / "image.tif"


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A 16-bit grey scene in EPSG:3857 on the pixel grid of tiles X..X+2 (768 x 256 px, no
    resampling): a west-to-east ramp (1000 to about 16,000) plus texture, so its west and east
    parts have very different percentiles."""
    rng = np.random.default_rng(18)
    cols = np.arange(3 * TILE_SIZE)
    data = 1000 + 20 * cols[None, :] + rng.integers(0, 400, (TILE_SIZE, 3 * TILE_SIZE))
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=3 * TILE_SIZE, height=TILE_SIZE, count=1, dtype="uint16",
                       crs="EPSG:3857", transform=from_origin(W, N, PX, PX), nodata=0) as dst:
        dst.write(data.astype(np.uint16)[None])
    return path


def cut(image: Path, out: Path, spans: list[tuple[int, int]]) -> list[str]:
    """``image``'s columns [c0, c1) for each span, written as GeoTIFFs with its profile."""
    paths = []
    with rasterio.open(image) as src:
        for i, (c0, c1) in enumerate(spans):
            win = Window(c0, 0, c1 - c0, src.height)
            profile = {**src.profile, "width": c1 - c0, "transform": src.window_transform(win)}
            with rasterio.open(out / f"part{i}.tif", "w", **profile) as dst:
                dst.write(src.read(window=win))
            paths.append(str(out / f"part{i}.tif"))
    return paths


def test_a_scene_cut_in_two_reads_as_the_whole_file(tmp_path, scene):
    # part0 covers tiles X and X+1, part1 X+1 and X+2: tile X+1 lies inside both.
    parts = cut(scene, tmp_path, [(0, 2 * TILE_SIZE), (TILE_SIZE, 3 * TILE_SIZE)])
    with open_geotiff_source(str(scene)) as whole, open_geotiff_source(parts) as mosaic:
        for x in (X, X + 1, X + 2):
            a, b = whole.fetch(x, Y, Z).image.astype(int), mosaic.fetch(x, Y, Z).image.astype(int)
            assert np.abs(a - b).max() <= 1, x
    # Each part stretched by its own percentiles (the rule before) reads tile X+1 differently.
    with GeoTiffTiles(parts[0]) as west, GeoTiffTiles(parts[1]) as east:
        assert np.abs(west.fetch(X + 1, Y, Z).image.astype(int) - east.fetch(X + 1, Y, Z).image.astype(int)).max() > 40


def test_a_tile_on_the_seam_has_no_step_and_the_map_draws_the_workers_pixels(tmp_path, scene):
    from PIL import Image

    from looking_glass.results.basemap import source_fetcher

    # The seam (part1 starts at column 300, part0 ends at 400) runs through tile X+1.
    parts = cut(scene, tmp_path, [(0, 400), (300, 3 * TILE_SIZE)])
    with open_geotiff_source(str(scene)) as whole, open_geotiff_source(parts) as mosaic:
        a, b = whole.fetch(X + 1, Y, Z).image.astype(int), mosaic.fetch(X + 1, Y, Z).image.astype(int)
        seam = b[:, 400 - TILE_SIZE - 4 : 400 - TILE_SIZE + 4, 0].astype(float)
    assert np.abs(a - b).max() <= 1
    # Across the seam the ramp climbs as everywhere else (20 DN of 16 bits a column): no step.
    assert abs(np.diff(seam.mean(0)).max() - np.diff(a[:, 100:140, 0].mean(0)).mean()) < 3
    png = source_fetcher(",".join(parts))(Z, X + 1, Y)  # the map's reader of the same source
    with Image.open(io.BytesIO(png)) as img:
        assert np.array_equal(np.asarray(img.convert("RGB")), b.astype(np.uint8))


def test_the_spacenet_sample_cut_in_two_overlapping_halves_reads_as_the_whole_image(tmp_path):
    with rasterio.open(SPACENET) as src:
        width = src.width
    parts = cut(SPACENET, tmp_path, [(0, width // 2 + 50), (width // 2 - 50, width)])
    with open_geotiff_source(str(SPACENET)) as whole, open_geotiff_source(parts) as mosaic:
        # Zoom-18 tiles west and east of the overlap (tile column 69556 holds the seam, where the
        # reprojection's bilinear kernel meets each part's edge).
        for x, y in [(69554, 105033), (69555, 105035), (69557, 105034), (69558, 105033)]:
            assert np.array_equal(whole.fetch(x, y, Z).image, mosaic.fetch(x, y, Z).image), (x, y)
        # On the seam the same stretch too: only a one-pixel line along the west part's edge
        # differs (its bilinear kernel lacks the pixels beyond the edge), no step.
        for y in range(105033, 105037):
            a, b = whole.fetch(69556, y, Z).image, mosaic.fetch(69556, y, Z).image
            assert (a != b).any(-1).mean() < 0.01, y


def sample(values: list[float], x0: float, pixel_area: float, width: float = 1.0) -> StretchSample:
    """A one-row sample in EPSG:3857 starting at x0, pixels ``width`` metres wide, grey."""
    data = np.repeat(np.asarray(values, np.float32)[None, None, :], 3, axis=0)
    bounds = (x0, 0.0, x0 + width * len(values), 1.0)
    return StretchSample(data, np.ones((1, len(values)), bool), Affine(width, 0, x0, 0, -1, 1.0),
                         CRS.from_epsg(3857), bounds, pixel_area, shapely.box(*bounds))


def test_the_pooled_rule_by_hand():
    # Weighted percentile: values 0, 10, 20 with weights 1, 1, 2 sit at cumulative-weight
    # midpoints rescaled to 0, 0.4, 1; the 40th percentile is 10, the 70th halfway to 20.
    assert np.allclose(weighted_percentiles(np.array([20.0, 0.0, 10.0]), np.array([2.0, 1.0, 1.0]), (40, 70)), [10, 15])
    # Equal weights: numpy's own (linear) percentile.
    v = np.random.default_rng(1).normal(size=101)
    assert np.allclose(weighted_percentiles(v, np.full(101, 3.0), (2, 98)), np.percentile(v, (2, 98)))
    # Two images far apart: A's pixels 0 and 10 count 1 m2 each, B's 20 counts 2 m2: the same
    # weighted percentiles, per band (one vote per pixel would give 8 and 14).
    lo, hi = pooled_stretch_limits([sample([0, 10], 0.0, 1.0), sample([20], 100.0, 2.0)], (40, 70))
    assert np.allclose(lo, 10) and np.allclose(hi, 15)
    # B overlapping A: its pixel whose centre lies inside A's footprint counts once, as A's.
    lo, hi = pooled_stretch_limits([sample([0, 10], 0.0, 1.0), sample([1000, 20], 1.0, 1.0)], (0, 100))
    assert np.allclose(lo, 0) and np.allclose(hi, 20)
    # The same with B in lon/lat degrees: its centres are reprojected to A's CRS to be tested.
    from rasterio.warp import transform

    (lon0, lon1), (lat, _) = transform("EPSG:3857", "EPSG:4326", [1.5, 2.6], [0.5, 0.5])
    d = lon1 - lon0  # B's pixels: centres at x = 1.5 m (inside A) and 2.6 m (outside)
    b_bounds = (lon0 - d / 2, lat - d / 2, lon1 + d / 2, lat + d / 2)
    b = StretchSample(np.repeat(np.asarray([[[1000, 20]]], np.float32), 3, axis=0), np.ones((1, 2), bool),
                      Affine(d, 0, b_bounds[0], 0, -d, b_bounds[3]), CRS.from_epsg(4326), b_bounds, 1.0,
                      shapely.box(1.0, -0.5, 3.1, 1.5))
    lo, hi = pooled_stretch_limits([sample([0, 10], 0.0, 1.0), b], (0, 100))
    assert np.allclose(lo, 0) and np.allclose(hi, 20)
    # Nothing valid: (0, 1), as for one image.
    empty = replace(sample([5], 0.0, 1.0), valid=np.zeros((1, 1), bool))
    lo, hi = pooled_stretch_limits([empty], (2, 98))
    assert np.array_equal(lo, [0, 0, 0]) and np.array_equal(hi, [1, 1, 1])


def test_each_image_is_sampled_smaller_as_images_are_added_and_weighted_by_its_area(tmp_path):
    assert member_sample_side(1) == STRETCH_SAMPLE_PX and member_sample_side(4) == STRETCH_SAMPLE_PX // 2
    path = tmp_path / "long.tif"  # 2000 x 100 px of 2 m pixels, no overviews: strided sample
    with rasterio.open(path, "w", driver="GTiff", width=2000, height=100, count=1, dtype="uint16",
                       crs="EPSG:32616", transform=from_origin(700000, 3700000, 2.0, 2.0)) as dst:
        dst.write(np.arange(1, 2001, dtype=np.uint16)[None, None, :].repeat(100, 1))
    with GeoTiffTiles(str(path)) as image:
        s = image.stretch_sample(500)  # every 4th pixel of every 4th row
    assert s.valid.shape == (25, 500) and s.pixel_area_m2 == pytest.approx(4.0 * 16)
    assert s.data[0, 0, :3].tolist() == [1, 5, 9]


def test_images_of_different_data_types_are_refused(tmp_path, scene):
    part = cut(scene, tmp_path, [(0, TILE_SIZE)])[0]
    grey8 = tmp_path / "grey8.tif"
    with rasterio.open(grey8, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs="EPSG:3857",
                       transform=from_origin(W, N, PX, PX)) as dst:
        dst.write(np.full((1, 64, 64), 7, np.uint8))
    with pytest.raises(MosaicError, match=r"same data type.*part0.tif: uint16, .*grey8.tif: uint8.*gdal_translate"):
        open_geotiff_source([part, str(grey8)])


def test_an_image_opened_without_its_own_stretch_refuses_to_draw_until_given_one(scene):
    with GeoTiffTiles(str(scene), own_stretch=False) as image:
        with pytest.raises(RuntimeError, match="no stretch set"):
            image.fetch(X, Y, Z)
        image.use_stretch((np.full(3, 1000.0), np.full(3, 17000.0)))
        assert image.fetch(X, Y, Z).image is not None

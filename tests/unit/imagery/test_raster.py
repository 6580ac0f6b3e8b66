"""The shared raster reading (issue 11: one address for bands, validity and the stretch)."""

import numpy as np
import pytest

from looking_glass.imagery.raster import (
    DEFAULT_STRETCH_PERCENTILES,
    RasterError,
    RasterImage,
    check_bands,
    check_stretch_percentiles,
    select_bands,
)


def test_stretch_percentiles_have_one_definition():
    import inspect

    from looking_glass.datasets.prepare import PrepareConfig
    from looking_glass.imagery.geotiff import GeoTiffTiles

    assert DEFAULT_STRETCH_PERCENTILES == (2.0, 98.0)  # the 2018 original's 2-98 stretch
    assert PrepareConfig().stretch_percentiles == DEFAULT_STRETCH_PERCENTILES
    assert inspect.signature(GeoTiffTiles).parameters["stretch_percentiles"].default == DEFAULT_STRETCH_PERCENTILES


@pytest.mark.parametrize(
    "count, bands, expected",
    [(1, None, (1, 1, 1)), (3, None, (1, 2, 3)), (4, (3, 2, 1), (3, 2, 1)), (4, (4,), (4, 4, 4))],
)
def test_select_bands(count, bands, expected):
    assert select_bands(count, bands, "img") == expected


@pytest.mark.parametrize("count, bands, message", [(4, None, "has 4 bands"), (3, (1, 2, 4), "band index 4 out of range")])
def test_select_bands_refuses(count, bands, message):
    with pytest.raises(RasterError, match=message):
        select_bands(count, bands, "img")


@pytest.mark.parametrize("bands, message", [((1, 2), "1 band"), ((0,), "1-based"), ((True,), "1-based"), ((1.0, 2, 3), "1-based")])
def test_check_bands(bands, message):
    check_bands(None)
    check_bands((3, 2, 1))
    with pytest.raises(RasterError, match=message):
        check_bands(bands)


def test_check_stretch_percentiles():
    check_stretch_percentiles((0.0, 100.0))
    for bad in [(50.0, 50.0), (-1.0, 98.0), (2.0, 101.0)]:
        with pytest.raises(RasterError, match="stretch_percentiles"):
            check_stretch_percentiles(bad)


def test_valid_mask_rule():
    data = np.array([[[0.0, 5.0, 5.0, np.nan]], [[0.0, 0.0, 5.0, 1.0]], [[0.0, 0.0, 5.0, 1.0]]], np.float32)
    mask = np.array([[255, 255, 0, 255]], np.uint8)
    # black (all 0) is nodata; one non-zero band is data; the dataset mask and NaN win.
    assert RasterImage.valid_mask(data, mask).tolist() == [[False, True, False, False]]


def test_uint16_is_stretched_between_the_percentiles(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    data = rng.integers(1, 4000, size=(3, 64, 64)).astype(np.uint16)
    path = tmp_path / "u16.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint16",
                       crs="EPSG:3857", transform=from_origin(1000, 1000, 1, 1)) as dst:
        dst.write(data)
    with rasterio.open(path) as src:
        img = RasterImage(src, "u16", (1, 2, 3), DEFAULT_STRETCH_PERCENTILES)
        lo, hi = img.stretch
        assert lo == pytest.approx(np.percentile(data.reshape(3, -1).astype(float), 2.0, axis=1))
        assert hi == pytest.approx(np.percentile(data.reshape(3, -1).astype(float), 98.0, axis=1))
        out = img.to_uint8(img.read(0, 0, 64, 64))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255

"""``prepare`` on a very large GeoTIFF: memory stays bounded (measured in a subprocess) and the
chips equal those of the same pixels cut from a small file.

The 20,000 x 20,000 uint16 file (800 MB of pixels) is tiled, deflate-compressed and sparse
(unwritten blocks are nodata), so it costs a few MB and a fraction of a second to write. Its data
are 10 x 10 px cells of 20 grey levels at offsets that are multiples of 10: the stretch sample of
the large file (every 10th pixel of every 10th row) and the small file's full read then see the
same distribution, so both get the same stretch and the chips can be compared exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from looking_glass.datasets.chips import load_split
from looking_glass.datasets.prepare import PrepareConfig, prepare

N = 20_000
BLOCK = 1024  # data region size (px)
REGIONS = [(0, 0), (5000, 7000), (12000, 3000), (N - BLOCK - 26, N - BLOCK - 26)]  # (row, col), multiples of 10
TRANSFORM = Affine(0.5, 0.0, 740000.0, 0.0, -0.5, 3740000.0)
CROP = (4864, 6912, 1536)  # row, col (multiples of the 256 px chip) and size: holds the 2nd region
REPO = Path(__file__).resolve().parents[2]


def _cells() -> np.ndarray:
    levels = np.random.default_rng(3).integers(0, 20, (BLOCK // 10 + 1, BLOCK // 10 + 1))
    return (300 + 200 * levels).repeat(10, 0).repeat(10, 1)[:BLOCK, :BLOCK].astype(np.uint16)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("large")
    cells = _cells()
    profile = dict(driver="GTiff", width=N, height=N, count=1, dtype="uint16", crs="EPSG:32616", transform=TRANSFORM,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate", nodata=0, sparse_ok=True)
    big = d / "big.tif"
    with rasterio.open(big, "w", **profile) as dst:
        for r, c in REGIONS:
            assert r % 10 == 0 and c % 10 == 0  # cells aligned with the stretch sample
            dst.write(cells, 1, window=Window(c, r, BLOCK, BLOCK))
    r0, c0, size = CROP
    crop = d / "crop.tif"
    with rasterio.open(big) as src:
        pixels = src.read(1, window=Window(c0, r0, size, size))
    small = {**profile, "width": size, "height": size, "transform": TRANSFORM * Affine.translation(c0, r0)}
    with rasterio.open(crop, "w", **small) as dst:
        dst.write(pixels, 1)
    # Footprints inside the second region, in the image's CRS (UTM 16N metres).
    x0, y0 = TRANSFORM * (7000, 5000)
    squares = [(x0 + 40 + 60 * i, y0 - 50 - 70 * j, 18 + 4 * i) for i in range(5) for j in range(4)]
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32616"}}, "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
            [[x, y], [x + s, y], [x + s, y - s], [x, y - s], [x, y]]]}} for x, y, s in squares]}
    labels = d / "labels.geojson"
    labels.write_text(json.dumps(doc))
    return {"dir": d, "big": big, "crop": crop, "labels": labels}


MEASURE = textwrap.dedent("""
    import json, resource, sys
    from looking_glass.datasets.prepare import PrepareConfig, prepare
    import rasterio, shapely, scipy.ndimage  # everything prepare imports, before the baseline
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    manifest = prepare([sys.argv[1]], [sys.argv[2]], sys.argv[3], PrepareConfig(max_nodata_fraction=0.9))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"base_kib": base, "peak_kib": peak, "counts": manifest["counts"]}))
""")


def test_a_large_geotiff_is_prepared_in_bounded_memory_and_equals_the_small_file_path(large, tmp_path):
    raster_bytes = N * N * 2
    out_big = tmp_path / "big-chips"
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(large["big"]), str(large["labels"]), str(out_big)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    grown = (measured["peak_kib"] - measured["base_kib"]) * 1024
    print(f"prepare of a {raster_bytes / 2**20:.0f} MiB raster: peak RSS grew by {grown / 2**20:.1f} MiB")
    # Bounded: prepare's own peak stays 5x below the raster's pixels (GDAL's default block cache
    # alone filled to ~900 MB here before reads were capped and sampled strip by strip).
    assert grown < raster_bytes / 5, f"prepare grew by {grown / 2**20:.0f} MiB on a {raster_bytes / 2**20:.0f} MiB raster"
    assert measured["counts"]["total"] == (N // 256 + 1) ** 2

    out_small = tmp_path / "crop-chips"
    prepare([str(large["crop"])], [str(large["labels"])], out_small, PrepareConfig(max_nodata_fraction=0.9))
    big_manifest = json.loads((out_big / "manifest.json").read_text())
    small_manifest = json.loads((out_small / "manifest.json").read_text())
    assert big_manifest["sources"]["images"][0]["stretch"] == small_manifest["sources"]["images"][0]["stretch"]

    def chips(out: Path, manifest: dict) -> dict:
        arrays = {s: load_split(out, s) for s in ("train", "validation")}
        by_id = {}
        for a in arrays.values():
            for i, cid in enumerate(a["chip_ids"]):
                by_id[str(cid)] = (a["image"][i], a["mask"][i], a["sdt"][i])
        return {tuple(round(v, 3) for v in c["bounds"]): by_id[c["id"]] for c in manifest["chips"]}

    big, small = chips(out_big, big_manifest), chips(out_small, small_manifest)
    assert len(small) == 25  # the region touches 5 x 5 of the crop's 6 x 6 chips, each with >= 10% data
    assert set(small) <= set(big)
    assert sum(int(m.sum()) for _, m, _ in small.values()) > 1000  # the footprints are in there
    for bounds, (image, mask, sdt) in small.items():
        b_image, b_mask, b_sdt = big[bounds]
        np.testing.assert_array_equal(image, b_image)
        np.testing.assert_array_equal(mask, b_mask)
        np.testing.assert_allclose(sdt, b_sdt, atol=1e-5)


def test_the_stretch_comes_from_overviews_when_the_file_has_them(tmp_path, monkeypatch):
    """A COG-like file (with overviews) and the same pixels without: one small decimated read
    (GDAL answers it from an overview) and the strip-by-strip sample give the same stretch."""
    from rasterio.enums import Resampling

    from looking_glass.imagery.raster import RasterImage, open_geotiff

    n = 6000
    profile = dict(driver="GTiff", width=n, height=n, count=1, dtype="uint16", crs="EPSG:32616", transform=TRANSFORM,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate", nodata=0)
    plain, with_overviews = tmp_path / "plain.tif", tmp_path / "overviews.tif"
    for path in (plain, with_overviews):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(_cells(), 1, window=Window(1000, 2000, BLOCK, BLOCK))
            dst.write(_cells(), 1, window=Window(4000, 3000, BLOCK, BLOCK))
    with rasterio.open(with_overviews, "r+") as dst:
        dst.build_overviews([2, 4, 8], Resampling.nearest)
    stretches = []
    for path in (plain, with_overviews):
        if path == with_overviews:  # from here on the strip-by-strip sample must not be needed
            monkeypatch.setattr(RasterImage, "_strided_sample", lambda *a: pytest.fail("read strip by strip"))
        src = open_geotiff(path, path.name)
        try:
            assert bool(src.overviews(1)) == (path == with_overviews)
            stretches.append(RasterImage(src, path.name, (1, 1, 1), (2.0, 98.0)).stretch)
        finally:
            src.close()
    (lo_a, hi_a), (lo_b, hi_b) = stretches
    np.testing.assert_array_equal(lo_a, lo_b)
    np.testing.assert_array_equal(hi_a, hi_b)
    assert lo_a[0] == 300 and hi_a[0] == 300 + 200 * 19  # the lowest and highest of the 20 levels

"""A GeoTIFF/COG as the worker's imagery source (rio-tiler, zoom-18 web-mercator tiles): pixels
against prepare's tiles mode on real SpaceNet data, statuses, band order, S3 through GDAL against
moto, the worker end to end, and `looking-glass serve-tiles` over real HTTP."""

import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import replace

import boto3
import numpy as np
import pytest
import requests
from test_worker import JOB, settings_for, start_job, tiny_segmenter  # noqa: F401 - a fixture

from looking_glass.grid import pixel_row_areas_m2
from looking_glass.imagery.tiles import decode_tile
from looking_glass.imagery.xyz import ImagerySourceError, TileFetcher, open_imagery
from looking_glass.pipeline.store import COMPLETE
from looking_glass.runtime.settings import SettingsError, WorkerSettings

rasterio = pytest.importorskip("rasterio")
from looking_glass.imagery.geotiff import GeoTiffError, GeoTiffTiles  # noqa: E402

SAMPLE = "tests/data/spacenet_atlanta_sample/image.tif"
FOOTPRINTS = "tests/data/spacenet_atlanta_sample/buildings.geojson"
# The zoom-18 tiles of the sample's lon/lat bounding box: x 69554..69558, y 105033..105037.
SAMPLE_TILES = [(x, y, 18) for y in range(105033, 105038) for x in range(69554, 69559)]
X0, Y0 = 152950, 132486  # the synthetic three-tile image below starts here


@pytest.fixture(scope="module")
def sample():
    with GeoTiffTiles(SAMPLE) as tiles:
        yield tiles


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """prepare's tiles mode on the sample, keeping every chip with data: {(x, y): chip}."""
    from looking_glass.datasets.chips import load_split
    from looking_glass.datasets.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("prep") / "chips"
    prepare([SAMPLE], [FOOTPRINTS], out, PrepareConfig(mode="tiles", max_nodata_fraction=1.0, val_fraction=0.0))
    split = load_split(out, "train")
    chips = {}
    for chip_id, image in zip(split["chip_ids"], split["image"]):
        _, z, x, y = str(chip_id).rsplit("_", 3)
        chips[(int(x), int(y))] = image
    return chips


def three_tile_tiff(path, dtype="uint8", bands=3, **creation):
    """An EPSG:3857 GeoTIFF on the zoom-18 grid, 3 tiles wide: tile X0 holds a pattern that
    differs per band, X0+1 is all nodata (0), X0+2 one single colour. Returns the pattern."""
    import mercantile
    from affine import Affine

    left = mercantile.xy_bounds(X0, Y0, 18)
    res = (left.right - left.left) / 256
    rng = np.random.default_rng(0)
    data = np.zeros((bands, 256, 768), dtype)
    pattern = rng.integers(1, 250, size=(bands, 256, 256)).astype(dtype)
    pattern[0] = np.linspace(1, 250, 256).astype(dtype)[None, :]  # band 1: left-right ramp
    data[:, :, :256] = pattern
    for b in range(bands):
        data[b, :, 512:] = 40 + 20 * b
    profile = dict(
        driver="GTiff", width=768, height=256, count=bands, dtype=dtype, crs="EPSG:3857", nodata=0,
        transform=Affine(res, 0.0, left.left, 0.0, -res, left.top), tiled=True, blockxsize=256, blockysize=256,
        **creation,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return np.moveaxis(pattern, 0, -1)


# ---- pixels and footprint on real data -------------------------------------------------------
def test_tiles_match_prepares_tiles_mode_on_the_spacenet_sample(sample, prepared):
    seen = {}
    for x, y, z in SAMPLE_TILES:
        tile = sample.fetch(x, y, z)
        if (x, y) not in prepared:  # prepare found no overlap: the footprint misses this tile
            assert tile.status == "no_imagery" and tile.reason == "outside the image"
            continue
        assert tile.image is not None, tile
        ours, theirs = tile.image.astype(int), prepared[(x, y)].astype(int)
        valid_ours, valid_theirs = (ours != 0).any(-1), (theirs != 0).any(-1)
        # Same footprint (a few edge pixels may differ) and the same stretched values.
        assert (valid_ours ^ valid_theirs).sum() <= 0.002 * 65536, (x, y)
        both = valid_ours & valid_theirs
        assert np.abs(ours - theirs)[both].max() <= 2 and np.abs(ours - theirs)[both].mean() < 0.2, (x, y)
        seen[(x, y)] = tile.image
    assert len(seen) == len(prepared) == 22
    # 16-bit data is stretched (prepare's 2-98 percentiles): the full 8-bit range is used.
    stacked = np.stack(list(seen.values()))
    assert stacked.max() == 255 and np.percentile(stacked[stacked > 0], 1) < 40


def test_the_area_with_imagery_is_the_images_area(sample):
    with rasterio.open(SAMPLE) as src:
        valid_px = int((src.read(1) != 0).sum())
        expected_m2 = valid_px * abs(src.transform.a * src.transform.e)  # UTM metres (scale ~1.0003)
    area = 0.0
    for x, y, z in SAMPLE_TILES:
        data = sample.read(x, y, z)
        if data is not None:
            area += float((~np.isnan(data).any(0)).sum(axis=1) @ pixel_row_areas_m2(x, y, z, 256))
    assert area == pytest.approx(expected_m2, rel=0.01)


def test_tiles_outside_the_image_have_no_imagery(sample):
    for x, y in ((69500, 105033), (69556, 105100), (0, 0)):
        tile = sample.fetch(x, y, 18)
        assert tile.image is None and tile.status == "no_imagery"
    assert sample.fetch(2**18, 5, 18).status == "no_imagery"  # not even on the grid


# ---- statuses and bands on a synthetic image --------------------------------------------------
def test_nodata_and_blank_tiles_are_skipped_and_band_order_is_selectable(tmp_path):
    path = tmp_path / "rgb.tif"
    pattern = three_tile_tiff(path)
    with GeoTiffTiles(str(path)) as rgb, GeoTiffTiles(str(path), bands=(3, 2, 1)) as bgr, \
            GeoTiffTiles(str(path), bands=(2,)) as grey:
        tile = rgb.fetch(X0, Y0, 18)
        assert np.abs(tile.image.astype(int) - pattern).max() <= 1  # uint8 passes through
        assert np.array_equal(bgr.fetch(X0, Y0, 18).image, tile.image[..., ::-1])
        g = grey.fetch(X0, Y0, 18).image
        assert np.array_equal(g[..., 0], tile.image[..., 1]) and np.array_equal(g[..., 0], g[..., 2])
        nodata = rgb.fetch(X0 + 1, Y0, 18)
        assert nodata.status == "skipped" and "nodata" in nodata.reason
        blank = rgb.fetch(X0 + 2, Y0, 18)
        assert blank.status == "skipped" and "blank" in blank.reason
        assert rgb.fetch(X0 - 1, Y0, 18).status == "no_imagery"
        assert rgb.fetch(X0, Y0 + 1, 18).status == "no_imagery"


def test_16_bit_data_uses_prepares_percentile_stretch(tmp_path):
    from looking_glass.imagery.raster import RasterImage

    path = tmp_path / "u16.tif"
    three_tile_tiff(path, dtype="uint16")
    with rasterio.open(path) as src:
        stretched = RasterImage(src, "u16", (1, 2, 3), (2.0, 98.0))
        raw = src.read(window=((0, 256), (0, 256)), out_dtype="float32")
    with GeoTiffTiles(str(path)) as tiles:
        image = tiles.fetch(X0, Y0, 18).image
    assert np.abs(image.astype(int) - stretched.to_uint8(raw).astype(int)).max() <= 1


@pytest.mark.parametrize(
    "make, bands, message",
    [
        (lambda p: None, None, "no such file"),
        (lambda p: p.write_text("not an image"), None, "not a GeoTIFF"),
        (lambda p: three_tile_tiff(p, bands=4, photometric="MINISBLACK"), None, "has 4 bands; say which"),
        (lambda p: three_tile_tiff(p), (4, 2, 1), "band index 4 out of range"),
        (lambda p: three_tile_tiff(p), (1, 2), "1 band (grey) or 3 bands"),
    ],
)
def test_unusable_geotiffs_are_refused_with_the_reason(tmp_path, make, bands, message):
    path = tmp_path / "bad.tif"
    make(path)
    with pytest.raises(GeoTiffError, match=re.escape(message)):
        GeoTiffTiles(str(path), bands=bands)


# ---- settings -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "env, message",
    [
        ({"LG_IMAGERY_GEOTIFF": "ortho.png"}, "does not end in .tif or .tiff"),
        ({"LG_IMAGERY_GEOTIFF": "a.tif,,b.tif"}, "has an empty entry in its list"),
        ({"LG_IMAGERY_GEOTIFF": "a.tif,m.vrt"}, "'m.vrt' does not end in .tif or .tiff (a list of GeoTIFFs)"),
        ({"LG_IMAGERY_GEOTIFF": "a.tif,https://x/b.tif"}, "only local paths and s3:// URIs"),
        ({"LG_IMAGERY_GEOTIFF": "https://x/ortho.tif"}, "only local paths and s3:// URIs"),
        ({"LG_IMAGERY_GEOTIFF": "s3://bucket-only.tif"}, "not an s3://bucket/key address"),
        ({"LG_IMAGERY_GEOTIFF": "a.tif", "LG_TILE_URL_TEMPLATE": "http://t/{z}/{x}/{y}.png"}, "not both"),
        ({"LG_IMAGERY_GEOTIFF": "a.tif", "LG_IMAGERY_SECRET": "s"}, "apply to LG_TILE_URL_TEMPLATE only"),
        ({"LG_IMAGERY_GEOTIFF": "a.tif", "LG_IMAGERY_BANDS": "1,2"}, "give 1 band (grey) or 3 bands"),
        ({"LG_IMAGERY_GEOTIFF": "a.tif", "LG_IMAGERY_BANDS": "r,g,b"}, "not a comma-separated list"),
        ({"LG_IMAGERY_GEOTIFF": "a.tif", "LG_IMAGERY_BANDS": "0,1,2"}, "numbered from 1"),
        ({"LG_TILE_URL_TEMPLATE": "http://t/{z}/{x}/{y}.png", "LG_IMAGERY_BANDS": "1"}, "LG_IMAGERY_GEOTIFF only"),
        ({}, "LG_TILE_URL_TEMPLATE is required (or LG_IMAGERY_GEOTIFF"),
    ],
)
def test_bad_geotiff_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError) as err:
        WorkerSettings.from_env(env)
    assert message in str(err.value)


def test_geotiff_settings_that_are_accepted():
    s = WorkerSettings.from_env({"LG_IMAGERY_GEOTIFF": "s3://imagery/city/ortho.TIFF", "LG_IMAGERY_BANDS": "3,2,1"})
    assert s.imagery_geotiff == "s3://imagery/city/ortho.TIFF" and s.imagery_bands == (3, 2, 1)
    assert s.tile_url_template == ""
    for mosaic in ("a.tif, s3://b/c.tif", "scenes.vrt", "s3://b/mosaic.json", "items.geojson"):
        assert WorkerSettings.from_env({"LG_IMAGERY_GEOTIFF": mosaic}).imagery_geotiff == mosaic


# ---- S3 through GDAL (/vsis3/) against moto ------------------------------------------------
@pytest.fixture
def s3_sample(moto_endpoint):
    s3 = boto3.client("s3")
    bucket = f"imagery-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(SAMPLE, bucket, "atlanta/image.tif")
    return bucket


def test_a_geotiff_on_s3_reads_in_place_like_the_local_file(s3_sample, sample):
    settings = WorkerSettings.from_env({"LG_IMAGERY_GEOTIFF": f"s3://{s3_sample}/atlanta/image.tif"})
    remote = open_imagery(settings, boto3.session.Session())
    try:
        assert remote.public_name == f"s3://{s3_sample}/atlanta/image.tif"
        for t in SAMPLE_TILES[:10]:
            a, b = remote.fetch(*t), sample.fetch(*t)
            assert a.status == b.status and (a.image is None or np.array_equal(a.image, b.image)), t
    finally:
        remote.close()
    missing = WorkerSettings.from_env({"LG_IMAGERY_GEOTIFF": f"s3://{s3_sample}/atlanta/nope.tif"})
    with pytest.raises(ImagerySourceError, match="nope.tif: no such S3 object"):
        open_imagery(missing, boto3.session.Session())


# ---- the worker end to end -----------------------------------------------------------------
def test_the_worker_runs_on_a_local_geotiff(aws, tiny_segmenter):  # noqa: F811
    from looking_glass.pipeline.worker import Worker

    session, names, resources = aws
    store, total = start_job(session, names, resources, [[y, 69554, 69559] for y in range(105033, 105038)])
    settings = replace(settings_for(""), imagery_geotiff=SAMPLE)
    stats = Worker(session, resources, settings, tiny_segmenter).run()
    job, items = store.get_job(JOB), store.tile_items(JOB)
    assert stats.tiles_new == total == len(items) == 25
    assert job["status"] == COMPLETE and job["tiles_done"] == 22 and job["tiles_no_imagery"] == 3
    assert job["building_area_m2"] == sum(i["building_area_m2"] for i in items)
    assert {i["imagery"] for i in items} == {SAMPLE}


def test_the_worker_runs_on_a_geotiff_on_s3(aws, tmp_path, tiny_segmenter):  # noqa: F811
    from looking_glass.pipeline.worker import Worker

    session, names, resources = aws
    path = tmp_path / "three.tif"
    three_tile_tiff(path)
    bucket = f"imagery-{uuid.uuid4().hex[:8]}"
    session.client("s3").create_bucket(Bucket=bucket)
    session.client("s3").upload_file(str(path), bucket, "three.tif")
    store, total = start_job(session, names, resources, [[Y0, X0 - 1, X0 + 4]])
    settings = replace(settings_for(""), imagery_geotiff=f"s3://{bucket}/three.tif")
    Worker(session, resources, settings, tiny_segmenter).run()
    job = store.get_job(JOB)
    statuses = {(int(i["x"]), i["status"]) for i in store.tile_items(JOB)}
    assert statuses == {(X0 - 1, "no_imagery"), (X0, "done"), (X0 + 1, "skipped"), (X0 + 2, "skipped"), (X0 + 3, "no_imagery")}
    assert job["status"] == COMPLETE and job["tiles_skipped"] == 2 and total == 5


def test_worker_process_exits_2_on_a_missing_geotiff(aws, tmp_path):
    _, _, resources = aws
    env = {
        **os.environ, **resources.to_env(),
        "LG_IMAGERY_GEOTIFF": str(tmp_path / "missing.tif"),
        "LG_MODEL_PATH": str(tmp_path / "never-loaded.keras"),  # exit 3 if it got that far
    }
    proc = subprocess.run([sys.executable, "-m", "looking_glass.pipeline.worker_main"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "bad imagery source:" in proc.stdout and "missing.tif: no such file" in proc.stdout


# ---- serve-tiles over real HTTP ------------------------------------------------------------
def test_serve_tiles_serves_the_geotiff_as_xyz_tiles(sample):
    proc = subprocess.Popen(
        [sys.executable, "-m", "looking_glass.cli.main", "serve-tiles", SAMPLE, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/\{z\}/\{x\}/\{y\}\.png", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        base = match.group(1)
        inside = requests.get(f"{base}/18/69555/105034.png", timeout=10)
        assert inside.status_code == 200 and inside.headers["Content-Type"] == "image/png"
        served = decode_tile(69555, 105034, 18, inside.content)
        assert np.array_equal(served.image, sample.fetch(69555, 105034, 18).image)
        assert requests.get(f"{base}/18/69500/105034.png", timeout=10).status_code == 404  # outside
        assert requests.get(f"{base}/18/69555/105034.mask.png", timeout=10).status_code == 404
        # The worker's HTTP fetcher sees the same statuses as the GeoTIFF source itself.
        fetcher = TileFetcher(match.group(0), timeout_s=10, retries=0)
        for t in [(69554, 105037, 18), (69558, 105037, 18), (69500, 105034, 18)]:
            over_http, direct = fetcher.fetch(*t), sample.fetch(*t)
            assert over_http.status == direct.status, t
            assert over_http.image is None or np.array_equal(over_http.image, direct.image)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_tiles_stops_on_sigint_or_sigterm_even_started_with_sigint_ignored(sig):
    # As a background job of a non-interactive shell starts it: SIGINT ignored, inherited.
    proc = subprocess.Popen(
        [sys.executable, "-m", "looking_glass.cli.main", "serve-tiles", SAMPLE, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        line = proc.stdout.readline()
        assert "Ctrl-C to stop" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_tiles_refuses_a_bad_image(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "looking_glass.cli.main", "serve-tiles", str(tmp_path / "none.tif")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "none.tif: no such file" in proc.stderr

"""Data preparation: chips, masks, signed distance, splits and the on-disk format, on real
SpaceNet imagery (tests/data/spacenet_atlanta_sample) and small synthetic GeoTIFFs."""

from __future__ import annotations

import json
import uuid
import warnings
from collections import defaultdict
from pathlib import Path

import mercantile
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from conftest import SPACENET_SAMPLE  # noqa: E402
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform as warp_transform
from shapely.geometry import box, shape

from looking_glass.datasets.chips import FORMAT_NAME, Chip, DatasetWriter, load_split, write_dataset
from looking_glass.datasets.errors import PrepareError
from looking_glass.datasets.labels import signed_distance_m
from looking_glass.datasets.prepare import PrepareConfig, prepare
from looking_glass.datasets.split import SPLITS, block_split
from looking_glass.datasets.synthetic import render_tile
from looking_glass.grid import ZOOM, ground_resolution_m, pixel_row_areas_m2, tile_center_lat

SAMPLE = SPACENET_SAMPLE
IMAGE = SAMPLE / "image.tif"
BUILDINGS = SAMPLE / "buildings.geojson"
SAMPLE_PX_M = 0.5


def footprint_area_in_image() -> float:
    """Reference: union of the footprints inside the image bounds, in EPSG:32616 (m2)."""
    doc = json.loads(BUILDINGS.read_text())
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32616"
    with rasterio.open(IMAGE) as src:
        bounds = box(*src.bounds)
    union = shapely.union_all([shape(f["geometry"]) for f in doc["features"]])
    return union.intersection(bounds).area


def all_chips(out: Path) -> dict[str, np.ndarray]:
    parts = [load_split(out, s) for s in SPLITS]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def chip_entries(manifest: dict) -> dict[str, dict]:
    return {c["id"]: c for c in manifest["chips"]}


def write_tif(path: Path, data: np.ndarray, crs="EPSG:3857", transform=None, nodata=None, **creation) -> Path:
    data = data if data.ndim == 3 else data[None]
    profile = {
        "driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
        "dtype": data.dtype.name, "transform": transform or Affine(0.5, 0.0, 1000.0, 0.0, -0.5, 2000.0),
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    profile.update(creation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the deliberately ungeoreferenced ones
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
    return path


def write_geojson(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def square_footprints(path: Path, x0=1010.0, y0=1990.0, size=20.0, crs="EPSG:3857") -> Path:
    """One size x size m square building with top-left corner at (x0, y0) in crs."""
    ring = [[x0, y0], [x0 + size, y0], [x0 + size, y0 - size], [x0, y0 - size], [x0, y0]]
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": crs}},
           "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    return write_geojson(path, doc)


@pytest.fixture(scope="module")
def native_256(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "native256"
    cfg = PrepareConfig(mode="native", chip_size=256, max_nodata_fraction=1.0, split_block=2)
    return out, prepare([str(IMAGE)], [str(BUILDINGS)], out, cfg)


@pytest.fixture(scope="module")
def tiles_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "tiles"
    cfg = PrepareConfig(mode="tiles", max_nodata_fraction=1.0, split_block=2)
    return out, prepare([str(IMAGE)], [str(BUILDINGS)], out, cfg)


# ------------------------------------------------------------------------------------------
# The real SpaceNet sample


@pytest.mark.parametrize("chip_size", [256, 300])
def test_native_building_area_matches_the_footprints(tmp_path, chip_size):
    cfg = PrepareConfig(mode="native", chip_size=chip_size, max_nodata_fraction=1.0, split_block=2)
    manifest = prepare([str(IMAGE)], [str(BUILDINGS)], tmp_path / "out", cfg)
    chips = all_chips(tmp_path / "out")
    per_side = -(-900 // chip_size)
    assert manifest["counts"]["total"] == manifest["counts"]["written"] == per_side**2 == len(chips["chip_ids"])
    measured = int(chips["mask"].sum()) * SAMPLE_PX_M**2
    reference = footprint_area_in_image()
    assert reference == pytest.approx(8459.36, abs=0.1)
    assert measured == pytest.approx(reference, rel=0.02)
    assert sum(c["building_area_m2"] for c in manifest["chips"]) == pytest.approx(measured)
    assert np.array_equal(chips["sdt"] > 0, chips["mask"] == 1)


def test_native_chips_format_and_manifest(native_256):
    out, manifest = native_256
    assert manifest["format"] == FORMAT_NAME and manifest["chip_size"] == 256 and manifest["mode"] == "native"
    assert (out / "manifest.json").exists() and json.loads((out / "manifest.json").read_text()) == manifest
    for split in SPLITS:
        for shard in sorted((out / split).glob("shard-*.npz")):
            with np.load(shard) as z:
                n = len(z["chip_ids"])
                assert z["image"].shape == (n, 256, 256, 3) and z["image"].dtype == np.uint8
                assert z["mask"].shape == (n, 256, 256) and z["mask"].dtype == np.uint8
                assert z["sdt"].shape == (n, 256, 256) and z["sdt"].dtype == np.float32
                assert set(np.unique(z["mask"])) <= {0, 1}
                assert np.array_equal(z["sdt"] > 0, z["mask"] == 1)
                assert z["sdt"].min() >= -10.0 and z["sdt"].max() <= 10.0
                entries = chip_entries(manifest)
                for i, cid in enumerate(z["chip_ids"]):
                    e = entries[str(cid)]
                    assert e["split"] == split and e["shard"] == f"{split}/{shard.name}" and e["index"] == i
                    assert e["building_pixels"] == int(z["mask"][i].sum())
    counts = manifest["counts"]
    assert counts["train"] + counts["validation"] == counts["written"] == 16 and counts["dropped"] == 0
    chip = chip_entries(manifest)["image_r000_c000"]
    assert chip["crs"] == "EPSG:32616" and chip["pixel_size_m"] == [0.5, 0.5]
    assert chip["bounds"] == [733601.0, 3725139.0 - 128.0, 733601.0 + 128.0, 3725139.0]
    # Edge chips are padded: 900 = 3 * 256 + 132.
    assert chip_entries(manifest)["image_r003_c003"]["nodata_fraction"] == pytest.approx(1 - (132 / 256) ** 2, abs=1e-6)
    assert chip_entries(manifest)["image_r000_c003"]["nodata_fraction"] == pytest.approx(1 - 132 / 256, abs=1e-6)
    balance = manifest["class_balance"]["building_pixel_fraction"]
    chips = all_chips(out)
    assert balance["all"] == pytest.approx(chips["mask"].mean())
    assert manifest["sources"]["images"][0]["path"] == str(IMAGE)
    assert manifest["sources"]["footprints"][0] == {
        "path": str(BUILDINGS), "crs": "EPSG:32616", "polygons": 43, "empty": False, "repaired_or_skipped": 0,
    }
    assert manifest["parameters"]["sdt_clip_m"] == 10.0 and manifest["parameters"]["split_block"] == 2
    assert "blocks of 2 x 2 chips" in manifest["split_rule"]


def test_padding_is_nodata_in_image_mask_and_sdt(native_256):
    out, _ = native_256
    chips = all_chips(out)
    i = list(chips["chip_ids"]).index("image_r003_c003")
    assert not chips["image"][i, 132:, :].any() and not chips["image"][i, :, 132:].any()
    assert not chips["mask"][i, 132:, :].any() and (chips["sdt"][i, 132:, :] < 0).all()


def test_sixteen_bit_stretch_uses_the_full_byte_range(native_256):
    out, manifest = native_256
    images = all_chips(out)["image"]
    assert images.min() == 0 and images.max() == 255
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 0] == images[..., 2]).all()  # grey
    grey = images[..., 0]
    # Percentiles 2 and 98 map to 0 and 255: about 2% of the image's pixels saturate at each end
    # (the padding of the edge chips is 0 too and is left out).
    n_image_px = 900 * 900
    padding = 16 * 256 * 256 - n_image_px
    assert 0.01 < (grey == 255).sum() / n_image_px < 0.03
    assert 0.01 < ((grey == 0).sum() - padding) / n_image_px < 0.03
    stretch = manifest["sources"]["images"][0]["stretch"]
    assert 54 <= stretch["low"][0] < stretch["high"][0] <= 6615


def test_sdt_is_continuous_across_chip_edges(native_256, tmp_path):
    """The SDT is computed with a margin, so a chip's edge sees the buildings beyond it: two
    chippings with different chip sizes give the same SDT where they overlap."""
    out, _ = native_256
    prepare([str(IMAGE)], [str(BUILDINGS)], tmp_path / "o", PrepareConfig(chip_size=512, max_nodata_fraction=1.0))
    small = all_chips(out)
    large = all_chips(tmp_path / "o")
    a = small["sdt"][list(small["chip_ids"]).index("image_r001_c001")]  # pixels 256..512
    b = large["sdt"][list(large["chip_ids"]).index("image_r000_c000")][256:512, 256:512]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_tiles_mode_chips_are_zoom18_tiles_with_correct_area(tiles_run):
    out, manifest = tiles_run
    chips = all_chips(out)
    assert chips["image"].shape[1:] == (256, 256, 3) and len(chips["chip_ids"]) == manifest["counts"]["written"] > 9
    entries = chip_entries(manifest)
    measured = 0.0
    for i, cid in enumerate(chips["chip_ids"]):
        e = entries[str(cid)]
        z, x, y = e["tile"]
        assert z == ZOOM and str(cid).endswith(f"_{z}_{x}_{y}")
        assert e["crs"] == "EPSG:3857"
        assert e["bounds"] == pytest.approx(list(mercantile.xy_bounds(x, y, z)))
        g = ground_resolution_m(tile_center_lat(x, y, z))
        assert e["pixel_size_m"] == pytest.approx([g, g])
        area = float(chips["mask"][i].sum(axis=1) @ pixel_row_areas_m2(x, y, z))
        assert e["building_area_m2"] == pytest.approx(area, abs=1e-3)
        measured += area
    # Masks are zeroed outside the imagery, so the truth is the footprints inside the image.
    reference = footprint_area_in_image()
    assert measured == pytest.approx(reference, rel=0.02)
    assert np.array_equal(chips["sdt"] > 0, chips["mask"] == 1)
    assert chips["image"].max() == 255
    # The image covers about 450 m x 450 m: the covered tile pixels times their area match it.
    covered = sum(
        float(((chips["image"][i] != 0).any(-1).sum(axis=1)) @ pixel_row_areas_m2(*entries[str(c)]["tile"][1:], ZOOM))
        for i, c in enumerate(chips["chip_ids"])
    )
    assert covered == pytest.approx(450.0 * 450.0, rel=0.02)


def test_tiles_mode_images_line_up_with_the_source(tiles_run):
    """Reprojection puts each source pixel where it belongs: sampling the source at the UTM
    positions of a tile chip's pixel centres correlates best with no shift (not with a one-pixel
    shift in any direction)."""
    out, manifest = tiles_run
    chips = all_chips(out)
    e = min(manifest["chips"], key=lambda c: c["nodata_fraction"])
    assert e["nodata_fraction"] == 0.0
    chip = chips["image"][list(chips["chip_ids"]).index(e["id"])][..., 0].astype(float)
    left, _, right, top = e["bounds"]
    res = (right - left) / 256
    cols, rows = np.meshgrid(np.arange(8, 248, 3), np.arange(8, 248, 3))
    with rasterio.open(IMAGE) as src:
        band = src.read(1).astype(float)
        inverse = ~src.transform

    def corr(dx: int, dy: int) -> float:
        mx, my = left + (cols + dx + 0.5) * res, top - (rows + dy + 0.5) * res
        ux, uy = warp_transform("EPSG:3857", "EPSG:32616", mx.ravel().tolist(), my.ravel().tolist())
        fc, fr = inverse @ (np.asarray(ux), np.asarray(uy))
        r, c = np.floor(fr).astype(int), np.floor(fc).astype(int)
        ok = (r >= 0) & (r < 900) & (c >= 0) & (c < 900)
        return float(np.corrcoef(band[r[ok], c[ok]], chip[rows.ravel()[ok], cols.ravel()[ok]])[0, 1])

    scores = {(dx, dy): corr(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    assert max(scores, key=scores.get) == (0, 0)
    assert scores[(0, 0)] > 0.95


def test_rfc7946_footprints_without_crs_are_lon_lat(tmp_path):
    doc = json.loads(BUILDINGS.read_text())
    del doc["crs"]
    for f in doc["features"]:
        ring = np.asarray(f["geometry"]["coordinates"][0])
        lon, lat = warp_transform("EPSG:32616", "EPSG:4326", ring[:, 0].tolist(), ring[:, 1].tolist())
        f["geometry"]["coordinates"] = [np.column_stack([lon, lat]).tolist()]
    wgs84 = write_geojson(tmp_path / "wgs84.geojson", doc)
    cfg = PrepareConfig(chip_size=300, max_nodata_fraction=1.0)
    manifest = prepare([str(IMAGE)], [str(wgs84)], tmp_path / "out", cfg)
    assert manifest["sources"]["footprints"][0]["crs"] == "EPSG:4326"
    measured = int(all_chips(tmp_path / "out")["mask"].sum()) * SAMPLE_PX_M**2
    assert measured == pytest.approx(footprint_area_in_image(), rel=0.02)


def test_nodata_chips_are_dropped_and_counted(tmp_path):
    # Default max_nodata_fraction 0.2: the 7 padded edge chips (48% or more padding) go.
    manifest = prepare([str(IMAGE)], [str(BUILDINGS)], tmp_path / "out", PrepareConfig(chip_size=256))
    counts = manifest["counts"]
    assert counts["written"] == 9 and counts["dropped_nodata"] == 7 and counts["total"] == 16
    assert all(c["nodata_fraction"] <= 0.2 for c in manifest["chips"])


def test_black_and_declared_nodata_pixels_count_as_nodata(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(1, 256, (3, 128, 128), dtype=np.uint8)
    data[:, :64, :64] = 0  # black corner: chip (0, 0) is all nodata, always dropped
    data[:, 64:96, 64:] = 7  # declared nodata in chip (1, 1): half of it
    tif = write_tif(tmp_path / "img.tif", data, nodata=7)
    fp = square_footprints(tmp_path / "fp.geojson")
    cfg = PrepareConfig(chip_size=64, max_nodata_fraction=0.4, split_block=1)
    manifest = prepare([str(tif)], [str(fp)], tmp_path / "out", cfg)
    ids = {c["id"] for c in manifest["chips"]}
    assert ids == {"img_r000_c001", "img_r001_c000"}
    assert manifest["counts"]["dropped_nodata"] == 2
    manifest = prepare([str(tif)], [str(fp)], tmp_path / "out2", PrepareConfig(chip_size=64, max_nodata_fraction=1.0))
    assert chip_entries(manifest)["img_r001_c001"]["nodata_fraction"] == pytest.approx(0.5)
    assert "img_r000_c000" not in chip_entries(manifest) and manifest["counts"]["dropped_nodata"] == 1


def test_uint8_passes_through_and_bands_are_selected(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.integers(1, 256, (4, 128, 128), dtype=np.uint8)
    tif = write_tif(tmp_path / "four.tif", data)
    fp = square_footprints(tmp_path / "fp.geojson")  # 20 m square = 40 x 40 px at 0.5 m
    cfg = PrepareConfig(chip_size=64, bands=(3, 2, 1), max_nodata_fraction=1.0)
    manifest = prepare([str(tif)], [str(fp)], tmp_path / "out", cfg)
    chips = all_chips(tmp_path / "out")
    i = list(chips["chip_ids"]).index("four_r001_c000")
    expected = np.moveaxis(data[[2, 1, 0], 64:128, 0:64], 0, -1)
    assert np.array_equal(chips["image"][i], expected)
    assert manifest["sources"]["images"][0]["stretch"] is None
    assert int(chips["mask"].sum()) == 40 * 40
    # The square starts 20 px into the image: inside pixels next to its edge are +0.25 m.
    j = list(chips["chip_ids"]).index("four_r000_c000")
    assert chips["sdt"][j, 20, 30] == pytest.approx(0.25) and chips["sdt"][j, 19, 30] == pytest.approx(-0.25)
    assert chips["sdt"][j, 40, 40] == pytest.approx(10.0 - 0.25)  # 20 px = 10 m to the edge, minus half a pixel


def test_single_band_selection_is_replicated(tmp_path):
    data = np.random.default_rng(3).integers(1, 256, (4, 64, 64), dtype=np.uint8)
    tif = write_tif(tmp_path / "four.tif", data)
    fp = square_footprints(tmp_path / "fp.geojson")
    prepare([str(tif)], [str(fp)], tmp_path / "out", PrepareConfig(chip_size=64, bands=(4,)))
    image = all_chips(tmp_path / "out")["image"][0]
    assert all(np.array_equal(image[..., k], data[3]) for k in range(3))


def test_tiles_mode_is_exact_on_imagery_already_on_the_tile_grid(tmp_path):
    """A web-mercator GeoTIFF aligned with the zoom-18 grid at 256 px per tile comes out pixel for
    pixel: tiles mode only moves imagery onto the grid, it does not blur what is already there."""
    x0, y0 = 150000, 120000
    b = mercantile.xy_bounds(x0, y0, ZOOM)
    res = (b.right - b.left) / 256
    data = np.random.default_rng(6).integers(1, 256, (3, 512, 512), dtype=np.uint8)
    tif = write_tif(tmp_path / "merc.tif", data, crs="EPSG:3857", transform=Affine(res, 0.0, b.left, 0.0, -res, b.top))
    # A footprint given in lon/lat (RFC 7946): 64 x 48 px inside tile (x0 + 1, y0 + 1).
    lon0, lat1 = warp_transform("EPSG:3857", "EPSG:4326", [b.left + 300 * res], [b.top - 300 * res])
    lon1, lat0 = warp_transform("EPSG:3857", "EPSG:4326", [b.left + 364 * res], [b.top - 348 * res])
    ring = [[lon0[0], lat0[0]], [lon1[0], lat0[0]], [lon1[0], lat1[0]], [lon0[0], lat1[0]], [lon0[0], lat0[0]]]
    fp = write_geojson(tmp_path / "fp.geojson", {"type": "Polygon", "coordinates": [ring]})
    manifest = prepare([str(tif)], [str(fp)], tmp_path / "out", PrepareConfig(mode="tiles", max_nodata_fraction=0.0))
    assert manifest["counts"]["written"] == 4 and manifest["counts"]["total"] == 4
    chips = all_chips(tmp_path / "out")
    for i, cid in enumerate(chips["chip_ids"]):
        _, x, y = chip_entries(manifest)[str(cid)]["tile"]
        r, c = (y - y0) * 256, (x - x0) * 256
        assert np.array_equal(chips["image"][i], np.moveaxis(data[:, r : r + 256, c : c + 256], 0, -1))
        expected = 64 * 48 if (x, y) == (x0 + 1, y0 + 1) else 0
        assert int(chips["mask"][i].sum()) == expected


def test_native_mode_in_a_geographic_crs_uses_metres(tmp_path):
    res = 5e-6  # degrees; at 45 N: 0.3936 m east-west, 0.5566 m north-south
    data = np.random.default_rng(7).integers(1, 256, (3, 128, 128), dtype=np.uint8)
    tif = write_tif(tmp_path / "geo.tif", data, crs="EPSG:4326", transform=Affine(res, 0.0, 10.0, 0.0, -res, 45.0 + 64 * res))
    ring = [[10.0 + 20 * res, 45.0 + 44 * res], [10.0 + 60 * res, 45.0 + 44 * res], [10.0 + 60 * res, 45.0 + 4 * res],
            [10.0 + 20 * res, 45.0 + 4 * res], [10.0 + 20 * res, 45.0 + 44 * res]]
    fp = write_geojson(tmp_path / "fp.geojson", {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}})
    manifest = prepare([str(tif)], [str(fp)], tmp_path / "out", PrepareConfig(chip_size=128, max_nodata_fraction=0.0))
    (chip,) = manifest["chips"]
    px, py = chip["pixel_size_m"]
    assert px == pytest.approx(res * np.pi / 180 * 6378137 * np.cos(np.radians(45.0)), rel=1e-3)
    assert py == pytest.approx(res * np.pi / 180 * 6378137, rel=1e-9)
    assert chip["building_pixels"] == 40 * 40
    assert chip["building_area_m2"] == pytest.approx(1600 * px * py, rel=1e-6)
    sdt = all_chips(tmp_path / "out")["sdt"][0]
    assert sdt[40, 20] == pytest.approx(px / 2 if px < py else py / 2)  # left edge column: half the smaller pixel side
    assert sdt[40, 18] == pytest.approx(-(px * 2 - min(px, py) / 2), rel=1e-5)  # two columns outside


# ------------------------------------------------------------------------------------------
# Split rule


def test_split_blocks_stay_together(tmp_path):
    cfg = PrepareConfig(chip_size=64, split_block=3, val_fraction=0.3, max_nodata_fraction=1.0)
    manifest = prepare([str(IMAGE)], [str(BUILDINGS)], tmp_path / "out", cfg)
    blocks = defaultdict(set)
    for c in manifest["chips"]:
        blocks[(c["row"] // 3, c["col"] // 3)].add(c["split"])
    assert len(blocks) == 25 and all(len(s) == 1 for s in blocks.values())
    splits = {next(iter(s)) for s in blocks.values()}
    assert splits == {"train", "validation"}
    for c in manifest["chips"]:
        assert c["split"] == block_split("image.tif", c["row"], c["col"], split_block=3, val_fraction=0.3, seed=0)
    # Deterministic: the same inputs give the same assignment.
    again = prepare([str(IMAGE)], [str(BUILDINGS)], tmp_path / "again", cfg)
    assert [(c["id"], c["split"]) for c in again["chips"]] == [(c["id"], c["split"]) for c in manifest["chips"]]


def test_block_split_fraction_and_seed():
    kw = dict(split_block=4, val_fraction=0.2)
    val = [block_split("a.tif", 4 * r, 4 * c, **kw) == "validation" for r in range(60) for c in range(60)]
    assert 0.17 < np.mean(val) < 0.23
    assert block_split("a.tif", 5, 6, **kw) == block_split("a.tif", 4, 7, **kw)  # same block
    other = [block_split("a.tif", 4 * r, 4 * c, seed=1, **kw) == "validation" for r in range(60) for c in range(60)]
    assert val != other
    assert all(block_split("a.tif", r, c, split_block=4, val_fraction=0.0) == "train" for r in range(20) for c in range(20))
    assert all(block_split("a.tif", r, c, split_block=4, val_fraction=1.0) == "validation" for r in range(20) for c in range(20))


# ------------------------------------------------------------------------------------------
# Signed distance


def test_signed_distance_values_and_sign():
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 1
    sdt = signed_distance_m(mask, 0.5, clip_m=3.0)
    assert sdt.dtype == np.float32
    assert np.array_equal(sdt > 0, mask == 1) and not (sdt == 0).any()
    assert sdt[10, 20] == pytest.approx(0.25) and sdt[9, 20] == pytest.approx(-0.25)
    assert sdt[0, 0] == pytest.approx(-3.0) and sdt.min() == -3.0 and sdt.max() == 3.0
    unclipped = signed_distance_m(mask, 0.5, clip_m=100.0)
    assert unclipped[19, 19] == pytest.approx(10 * 0.5 - 0.25)  # 10 px from the nearest outside centre
    # Anisotropic pixels: (x, y) sizes.
    aniso = signed_distance_m(mask, (1.0, 0.5), clip_m=100.0)
    assert aniso[5, 20] == pytest.approx(-(5 * 0.5 - 0.25))  # 5 rows above the square
    assert aniso[20, 5] == pytest.approx(-(5 * 1.0 - 0.25))  # 5 columns left of it
    # Degenerate masks.
    assert (signed_distance_m(np.zeros((8, 8)), 0.5, 2.0) == -2.0).all()
    assert (signed_distance_m(np.ones((8, 8)), 0.5, 2.0) == 2.0).all()
    # Clip smaller than half a pixel keeps the sign.
    tiny = signed_distance_m(mask, 0.5, clip_m=0.1)
    assert np.array_equal(tiny > 0, mask == 1)
    assert np.allclose(np.unique(tiny), [-0.1, 0.1])


# ------------------------------------------------------------------------------------------
# The shared writer (used by the synthetic generator too)


def synthetic_chip(x: int, y: int) -> Chip:
    image, mask = render_tile(ZOOM, x, y)
    g = ground_resolution_m(tile_center_lat(x, y, ZOOM))
    b = mercantile.xy_bounds(x, y, ZOOM)
    return Chip(
        id=f"synth_{ZOOM}_{x}_{y}",
        split=block_split("web-mercator-z18", y, x, split_block=4, val_fraction=0.5),
        image=image, mask=mask.astype(np.uint8), sdt=signed_distance_m(mask, g, 10.0),
        source="synthetic", crs="EPSG:3857", bounds=(b.left, b.bottom, b.right, b.top), pixel_size_m=(g, g),
        meta={"tile": [ZOOM, x, y]},
    )


def test_write_dataset_round_trip_with_synthetic_tiles(tmp_path):
    chips = [synthetic_chip(150000 + i, 120000 + j) for i in range(3) for j in range(3)]
    manifest = write_dataset(tmp_path / "synth", chips, shard_size=2, dropped={"nodata": 1}, mode="synthetic")
    assert manifest["counts"]["written"] == 9 and manifest["counts"]["total"] == 10 and manifest["mode"] == "synthetic"
    loaded = {s: load_split(tmp_path / "synth", s) for s in SPLITS}
    by_id = {c.id: c for c in chips}
    for split, arrays in loaded.items():
        n = manifest["counts"][split]
        assert len(arrays["chip_ids"]) == n
        assert len(manifest["shards"][split]) == -(-n // 2)
        for k, cid in enumerate(arrays["chip_ids"]):
            assert np.array_equal(arrays["image"][k], by_id[str(cid)].image)
            assert np.array_equal(arrays["sdt"][k], by_id[str(cid)].sdt)
    assert not list(tmp_path.glob(".synth.*"))


def test_writer_rejects_inconsistent_chips_and_leaves_nothing(tmp_path):
    bad = synthetic_chip(150000, 120000)
    bad.sdt = -bad.sdt
    with pytest.raises(ValueError, match="sdt sign disagrees"):
        write_dataset(tmp_path / "out", [synthetic_chip(150001, 120000), bad])
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    with DatasetWriter(tmp_path / "out2") as w:
        w.add(synthetic_chip(150000, 120000))
        with pytest.raises(ValueError, match="duplicate chip id"):
            w.add(synthetic_chip(150000, 120000))
    assert list(tmp_path.iterdir()) == []  # no commit: nothing written


# ------------------------------------------------------------------------------------------
# Bad inputs, overwrite, atomicity


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(4)
    d = tmp_path / "in"
    d.mkdir()
    return {
        "rgb": write_tif(d / "rgb.tif", rng.integers(1, 256, (3, 64, 64), dtype=np.uint8)),
        # Four colour bands (GDAL would make 4 bytes RGBA, whose alpha needs no band list).
        "four": write_tif(d / "four.tif", rng.integers(1, 256, (4, 64, 64), dtype=np.uint8), photometric="MINISBLACK"),
        "two": write_tif(d / "two.tif", rng.integers(1, 256, (2, 64, 64), dtype=np.uint8)),
        "nocrs": write_tif(d / "nocrs.tif", rng.integers(1, 256, (3, 64, 64), dtype=np.uint8), crs=None),
        "nogeo": write_tif(d / "nogeo.tif", rng.integers(1, 256, (3, 64, 64), dtype=np.uint8), transform=Affine.identity()),
        "png": write_png(d / "img.png"),
        "text": _write(d / "notes.tif", "hello"),
        "fp": square_footprints(d / "fp.geojson"),
        "notjson": _write(d / "broken.geojson", "{not json"),
        "notgeojson": _write(d / "other.geojson", json.dumps({"hello": 1})),
        "points": write_geojson(d / "points.geojson", {"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [30.0, -1.9]}}]}),
        "badcrs": write_geojson(d / "badcrs.geojson", {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::999999"}}, "features": []}),
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def write_png(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(path)
    return path


BAD_INPUTS = [
    ("missing image", lambda i: ([str(i["rgb"].parent / "nope.tif")], [str(i["fp"])], {}), "nope.tif: no such file"),
    ("missing footprints", lambda i: ([str(i["rgb"])], [str(i["fp"].parent / "nope.geojson")], {}), "nope.geojson: no such file"),
    ("text as image", lambda i: ([str(i["text"])], [str(i["fp"])], {}), "notes.tif: not a GeoTIFF"),
    ("png as image", lambda i: ([str(i["png"])], [str(i["fp"])], {}), r"img.png: not a GeoTIFF \(GDAL reads it as PNG\)"),
    ("no crs", lambda i: ([str(i["nocrs"])], [str(i["fp"])], {}), "nocrs.tif: the GeoTIFF has no CRS"),
    ("no geotransform", lambda i: ([str(i["nogeo"])], [str(i["fp"])], {}), "nogeo.tif: the GeoTIFF is not georeferenced"),
    ("directory as image", lambda i: ([str(i["rgb"].parent)], [str(i["fp"])], {}), "in: is a directory; name its files with a glob"),
    ("footprints not json", lambda i: ([str(i["rgb"])], [str(i["notjson"])], {}), "broken.geojson: not GeoJSON"),
    ("footprints not geojson", lambda i: ([str(i["rgb"])], [str(i["notgeojson"])], {}), "other.geojson: not GeoJSON"),
    ("no polygons", lambda i: ([str(i["rgb"])], [str(i["points"])], {}), "points.geojson: no usable building polygon in it"),
    ("unknown crs", lambda i: ([str(i["rgb"])], [str(i["badcrs"])], {}), "badcrs.geojson: unknown CRS"),
    ("band out of range", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"bands": (1, 2, 4)}), "band index 4 out of range"),
    ("four bands unselected", lambda i: ([str(i["four"])], [str(i["fp"])], {}), "four.tif: has 4 bands; say which"),
    ("two bands unselected", lambda i: ([str(i["two"])], [str(i["fp"])], {}), "two.tif: has 2 bands"),
    ("two band indices", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"bands": (1, 2)}), "bands must name 1 band"),
    ("band zero", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"bands": (0, 1, 2)}), "1-based"),
    ("small chips", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"chip_size": 16}), "chip_size must be an integer >= 32"),
    ("tiles chip size", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"mode": "tiles", "chip_size": 300}), "chip_size must be 256"),
    ("bad mode", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"mode": "mosaic"}), "mode must be one of"),
    ("val fraction", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"val_fraction": 1.5}), "val_fraction must be a fraction"),
    ("nodata fraction", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"max_nodata_fraction": -0.1}), "max_nodata_fraction must be a fraction"),
    ("sdt clip", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"sdt_clip_m": 0}), "sdt_clip_m must be a positive"),
    ("percentiles", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"stretch_percentiles": (98, 2)}), "stretch_percentiles"),
    ("split block", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"split_block": 0}), "split_block must be"),
    ("shard size", lambda i: ([str(i["rgb"])], [str(i["fp"])], {"shard_size": 0}), "shard_size must be"),
    ("no images", lambda i: ([], [str(i["fp"])], {}), "no images given"),
    ("no footprints", lambda i: ([str(i["rgb"])], [], {}), "no footprint files given"),
    ("bad s3 address", lambda i: (["s3:///image.tif"], [str(i["fp"])], {}), "not an s3://bucket/key"),
]


@pytest.mark.parametrize("name, build, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_raise_prepare_error_and_write_nothing(tmp_path, inputs, name, build, message):
    images, footprints, overrides = build(inputs)
    out = tmp_path / "outs" / "dataset"
    with pytest.raises(PrepareError, match=message):
        prepare(images, footprints, out, PrepareConfig(chip_size=overrides.pop("chip_size", 64), **overrides))
    assert not out.exists()
    assert not (tmp_path / "outs").exists() or list((tmp_path / "outs").iterdir()) == []


def test_refuses_to_overwrite_unless_asked(tmp_path, inputs):
    out = tmp_path / "out"
    cfg = PrepareConfig(chip_size=64)
    args = ([str(inputs["rgb"])], [str(inputs["fp"])], out, cfg)
    first = prepare(*args)
    with pytest.raises(PrepareError, match=r"not empty \(give --overwrite to replace it\)"):
        prepare(*args)
    assert json.loads((out / "manifest.json").read_text())["created"] == first["created"]
    second = prepare(*args, overwrite=True)
    assert second["counts"] == first["counts"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no temp or old dirs left
    # overwrite=True never deletes a directory that is not a dataset.
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.txt").write_text("keep me")
    with pytest.raises(PrepareError, match="refusing to overwrite"):
        prepare([str(inputs["rgb"])], [str(inputs["fp"])], other, cfg, overwrite=True)
    assert (other / "thesis.txt").read_text() == "keep me"
    # An existing empty directory is fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare([str(inputs["rgb"])], [str(inputs["fp"])], empty, cfg)
    assert (empty / "manifest.json").exists()


def test_failure_midway_leaves_nothing(tmp_path, inputs, monkeypatch):
    import looking_glass.datasets.cut as prep

    real = prep._finish_chip
    calls = {"n": 0}

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real(*a, **kw)

    monkeypatch.setattr(prep, "_finish_chip", failing)
    big = write_tif(tmp_path / "big.tif", np.random.default_rng(5).integers(1, 256, (3, 128, 128), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare([str(big)], [str(inputs["fp"])], tmp_path / "out", PrepareConfig(chip_size=64, shard_size=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif", "in"]


# ------------------------------------------------------------------------------------------
# S3 inputs


def test_s3_inputs(moto_endpoint, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    bucket = f"prep-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(IMAGE), bucket, "atlanta/image.tif")
    s3.upload_file(str(BUILDINGS), bucket, "atlanta/buildings.geojson")
    cfg = PrepareConfig(chip_size=300, max_nodata_fraction=1.0)
    manifest = prepare(
        [f"s3://{bucket}/atlanta/image.tif"], [f"s3://{bucket}/atlanta/buildings.geojson"], tmp_path / "out", cfg
    )
    assert manifest["sources"]["images"][0]["path"] == f"s3://{bucket}/atlanta/image.tif"
    assert manifest["counts"]["written"] == 9
    measured = int(all_chips(tmp_path / "out")["mask"].sum()) * SAMPLE_PX_M**2
    assert measured == pytest.approx(footprint_area_in_image(), rel=0.02)
    assert {c["id"] for c in manifest["chips"]} == {f"image_r{r:03d}_c{c:03d}" for r in range(3) for c in range(3)}
    with pytest.raises(PrepareError, match="no such S3 object"):
        prepare([f"s3://{bucket}/atlanta/missing.tif"], [str(BUILDINGS)], tmp_path / "out2", cfg)
    assert not (tmp_path / "out2").exists()

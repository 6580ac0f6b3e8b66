"""GeoTIFFs as real files come (issue 16): orientation, validity declarations, data types and label
files, read alike by ``prepare`` (both modes), the worker's GeoTIFF source and ``serve-tiles``
(both :class:`GeoTiffTiles`). Inputs: tests/data/cases/geotiff-south-up, labels-empty-file, and
GeoTIFFs written here."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import TESTS_DIR
from PIL import Image
from rasterio.control import GroundControlPoint

from looking_glass.datasets.chips import load_split
from looking_glass.datasets.errors import PrepareError
from looking_glass.datasets.prepare import PrepareConfig, prepare
from looking_glass.datasets.split import SPLITS
from looking_glass.grid import tile_mercator_bounds
from looking_glass.imagery.geotiff import GeoTiffError, GeoTiffTiles

CASES = TESTS_DIR / "data" / "cases"
SOUTH_UP = CASES / "geotiff-south-up"
EMPTY_LABELS = CASES / "labels-empty-file"


def chips_of(out: Path) -> dict[str, dict[str, np.ndarray]]:
    """chip id (without the image prefix) -> image, mask, sdt."""
    result = {}
    for split in SPLITS:
        part = load_split(out, split)
        for i, cid in enumerate(part["chip_ids"]):
            key = re.search(r"(18_\d+_\d+|r\d+_c\d+)$", str(cid)).group(1)
            result[key] = {k: part[k][i] for k in ("image", "mask", "sdt")}
    return result


# ---- orientation ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["native", "tiles"])
def test_south_up_prepares_exactly_as_north_up(tmp_path, mode):
    runs = {}
    for name in ("north_up.tif", "south_up_same_pixels.tif"):
        out = tmp_path / name
        manifest = prepare([SOUTH_UP / name], [SOUTH_UP / "building.geojson"], out, PrepareConfig(mode=mode, max_nodata_fraction=1.0))
        runs[name] = (manifest, chips_of(out))
    (m_n, c_n), (m_s, c_s) = runs["north_up.tif"], runs["south_up_same_pixels.tif"]
    assert c_n.keys() == c_s.keys() and c_n
    for key in c_n:
        for arr in ("image", "mask", "sdt"):
            assert np.array_equal(c_n[key][arr], c_s[key][arr]), (mode, key, arr)
    strip = lambda c: {k: v for k, v in c.items() if k not in ("id", "source", "shard", "index")}  # noqa: E731
    for a, b in zip(m_n["chips"], m_s["chips"]):
        assert strip(a) == strip(b)
        west, south, east, north = a["bounds"]
        assert south < north and west < east
    assert sum(c["building_pixels"] for c in m_s["chips"]) > 0


def test_south_up_tiles_from_the_geotiff_source_match_north_up():
    """The worker's source and serve-tiles (GeoTiffTiles.fetch / .png) on both files."""
    with GeoTiffTiles(str(SOUTH_UP / "north_up.tif")) as north, GeoTiffTiles(str(SOUTH_UP / "south_up_same_pixels.tif")) as south:
        seen = 0
        for x in range(152960, 152964):
            for y in range(132492, 132496):
                a, b = north.fetch(x, y, 18), south.fetch(x, y, 18)
                assert a.status == b.status
                if a.image is not None:
                    seen += 1
                    assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1
                    assert north.png(x, y, 18) is not None and south.png(x, y, 18) is not None
        assert seen >= 1


def _georef_variant(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.tif"
    shutil.copy(SOUTH_UP / "north_up.tif", path)
    with rasterio.open(path, "r+") as dst:
        if kind == "rotated":
            dst.transform = Affine(0.5, 0.1, 173000.0, 0.1, -0.5, 9784000.0)
        else:
            crs = dst.crs
            gcps = [GroundControlPoint(r, c, 173000.0 + c * 0.5, 9784000.0 - r * 0.5) for r, c in ((0, 0), (0, 256), (256, 0), (256, 256))]
            dst.gcps = (gcps, crs)
    return path


@pytest.mark.parametrize("kind, reason", [("rotated", "rotated or sheared"), ("gcps", "ground control points")])
def test_rotated_and_gcp_georeferencing_are_refused_alike(tmp_path, kind, reason):
    path = _georef_variant(tmp_path, kind)
    messages = []
    for mode in ("native", "tiles"):
        with pytest.raises(PrepareError) as exc:
            prepare([path], [SOUTH_UP / "building.geojson"], tmp_path / f"out-{mode}", PrepareConfig(mode=mode))
        messages.append(str(exc.value))
    with pytest.raises(GeoTiffError) as exc:
        GeoTiffTiles(str(path))
    messages.append(str(exc.value))
    assert len(set(messages)) == 1 and reason in messages[0] and "gdalwarp" in messages[0]


# ---- validity and data types ------------------------------------------------------------------
TX, TY = 152962, 132494  # one zoom-18 tile: the GeoTIFFs below are exactly it, in EPSG:3857


def _tile_tif(tmp_path: Path, dtype: str, how: str, south_up: bool = False) -> Path:
    """A 256 px GeoTIFF on tile TX/TY's own grid: a bright square roof on textured ground, the
    left quarter empty, declared ``how`` (nodata value, internal mask, alpha band, NaN); stored
    south-up (rows reversed, positive y pixel size) with ``south_up``."""
    left, bottom, right, top = tile_mercator_bounds(TX, TY, 18)
    res = (right - left) / 256
    rng = np.random.default_rng(3)
    base = 300.0 + rng.integers(0, 1200, (256, 256))
    base[100:160, 100:160] = 2500.0
    if dtype == "uint8":
        base = base / 12
    if dtype == "int16":
        base = base - 2000  # negative values (none exactly 0, which the black rule would empty)
    grey = np.stack([base, base * 0.9, base * 0.8]).astype(dtype)
    empty = np.zeros((256, 256), bool)
    empty[:, :64] = True
    profile = dict(driver="GTiff", width=256, height=256, dtype=dtype, crs="EPSG:3857",
                   transform=Affine(res, 0, left, 0, -res, top))
    path = tmp_path / f"{dtype}-{how}{'-south-up' if south_up else ''}.tif"
    if south_up:
        grey, empty = grey[:, ::-1].copy(), empty[::-1].copy()
        profile["transform"] = Affine(res, 0, left, 0, res, bottom)
    if how == "nodata":
        fill = -999 if dtype in ("int16", "float32") else 1
        grey[:, empty] = fill
        with rasterio.open(path, "w", count=3, nodata=fill, **profile) as dst:
            dst.write(grey)
    elif how == "nan":
        grey[:, empty] = np.nan
        with rasterio.open(path, "w", count=3, nodata=float("nan"), **profile) as dst:
            dst.write(grey)
    elif how == "mask":
        grey[:, empty] = 77
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            with rasterio.open(path, "w", count=3, **profile) as dst:
                dst.write(grey)
                dst.write_mask(np.where(empty, 0, 255).astype(np.uint8))
    else:  # alpha
        grey[:, empty] = 77
        alpha = np.where(empty, 0, np.iinfo(dtype).max if dtype != "float32" else 1.0).astype(dtype)
        with rasterio.open(path, "w", count=4, photometric="RGB", alpha="YES", **profile) as dst:
            dst.write(np.concatenate([grey, alpha[None]]))
            dst.colorinterp = [rasterio.enums.ColorInterp.red, rasterio.enums.ColorInterp.green,
                               rasterio.enums.ColorInterp.blue, rasterio.enums.ColorInterp.alpha]
    return path


CASES_VALIDITY = (
    [(d, h, False) for d in ("uint8", "uint16", "int16", "float32") for h in ("nodata", "mask", "alpha")]
    + [("float32", "nan", False)]
    + [("uint16", h, True) for h in ("nodata", "mask", "alpha")]
)


@pytest.mark.parametrize("dtype, how, south_up", CASES_VALIDITY)
def test_prepare_worker_and_serve_tiles_agree_on_validity_and_stretch(tmp_path, dtype, how, south_up):
    path = _tile_tif(tmp_path, dtype, how, south_up)
    footprints = tmp_path / "none.geojson"
    footprints.write_text('{"type": "FeatureCollection", "features": []}')
    manifest = prepare([path], [footprints], tmp_path / "out", PrepareConfig(mode="tiles", max_nodata_fraction=1.0))
    chips = chips_of(tmp_path / "out")
    chip = chips[f"18_{TX}_{TY}"]["image"]
    for mode in ("native",):  # the image's own grid: the same nodata
        native = prepare([path], [footprints], tmp_path / mode, PrepareConfig(mode=mode, max_nodata_fraction=1.0))
        assert abs(native["chips"][0]["nodata_fraction"] - 0.25) < 0.01
        assert np.array_equal(chips_of(tmp_path / mode)["r000_c000"]["image"], chips_of(tmp_path / "out")[f"18_{TX}_{TY}"]["image"])
    with GeoTiffTiles(str(path)) as source:
        tile = source.fetch(TX, TY, 18)
        served = np.asarray(Image.open(io.BytesIO(source.png(TX, TY, 18))))
    assert tile.image is not None
    entry = next(c for c in manifest["chips"] if c["id"].endswith(f"{TX}_{TY}"))
    assert abs(entry["nodata_fraction"] - 0.25) < 0.01, entry
    # The empty quarter: black in the chip and the worker's tile, transparent when served.
    for img in (chip, tile.image, served[..., :3]):
        assert (img[:, :62] == 0).all() and img[:, 66:].mean() > 20
    assert (served[:, :62, 3] == 0).all() and (served[:, 66:, 3] == 255).all()
    # The same stretch: the roof bright, the ground mid-grey, in all three.
    for img in (chip, tile.image, served[..., :3]):
        grey = img.astype(float).mean(-1)
        roof, ground = grey[110:150, 110:150].mean(), grey[10:90, 80:250].mean()
        assert roof - ground > 80 and ground > 20, (roof, ground)
    assert np.abs(chip[:, 66:].astype(int) - tile.image[:, 66:].astype(int)).mean() < 2


# ---- labels -----------------------------------------------------------------------------------
def test_an_empty_label_file_gives_negative_chips(tmp_path):
    """tests/data/cases/labels-empty-file: the second image's labels are an empty
    FeatureCollection (how SpaceNet ships images without buildings)."""
    out = tmp_path / "out"
    manifest = prepare(
        [EMPTY_LABELS / "img1_with_building.tif", EMPTY_LABELS / "img2_no_buildings.tif"],
        [EMPTY_LABELS / "buildings_img1.geojson", EMPTY_LABELS / "buildings_img2.geojson"],
        out,
        PrepareConfig(max_nodata_fraction=1.0),
    )
    entries = {Path(f["path"]).name: f for f in manifest["sources"]["footprints"]}
    assert entries["buildings_img2.geojson"]["empty"] is True and entries["buildings_img1.geojson"]["empty"] is False
    assert any("buildings_img2.geojson" in w and "empty" in w for w in manifest["warnings"])
    by_image = {}
    for c in manifest["chips"]:
        by_image.setdefault(Path(c["source"]).name, []).append(c)
    assert by_image["img2_no_buildings.tif"] and all(c["building_pixels"] == 0 for c in by_image["img2_no_buildings.tif"])
    assert sum(c["building_pixels"] for c in by_image["img1_with_building.tif"]) > 0


def test_invalid_label_geometries_are_repaired_or_skipped_with_a_warning(tmp_path):
    building = json.loads((SOUTH_UP / "building.geojson").read_text())
    ring = building["features"][0]["geometry"]["coordinates"][0]
    (x0, y0), (x1, _), (_, y2) = ring[0], ring[1], ring[2]
    bowtie = [[x0, y0], [x1, y2], [x1, y0], [x0, y2], [x0, y0]]  # self-intersecting
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "bowtie", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [bowtie]}},
        {"type": "Feature", "id": "broken", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1]]]}},
        {"type": "Feature", "id": "flat", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x0, y0], [x0, y0]]]}},
    ]}
    labels = tmp_path / "labels.geojson"
    labels.write_text(json.dumps(doc))
    logs = []
    manifest = prepare([SOUTH_UP / "north_up.tif"], [labels], tmp_path / "out", PrepareConfig(max_nodata_fraction=1.0), log=logs.append)
    (text,) = [w for w in manifest["warnings"] if w.startswith(str(labels))]  # one line for the file
    assert "2 feature(s) skipped (1 unreadable Polygon, 1 invalid Polygon), the rest used (1)" in text
    assert "'bowtie'" in text and "1 invalid polygon(s) repaired" in text
    assert "'broken'" in text and "'flat'" in text
    assert manifest["sources"]["footprints"][0]["repaired_or_skipped"] == 3
    assert any("'bowtie'" in line for line in logs)
    assert sum(c["building_pixels"] for c in manifest["chips"]) > 0

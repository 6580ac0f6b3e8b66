"""Mosaics and capture dates on real GeoTIFFs written here with rasterio (web mercator, aligned
with the zoom-18 tile grid so every pixel's source is known)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from looking_glass.grid import TILE_SIZE, tile_mercator_bounds
from looking_glass.imagery.capture import CaptureDateError, parse_capture_date
from looking_glass.imagery.geotiff import GeoTiffError, GeoTiffTiles
from looking_glass.imagery.mosaic import MosaicError, MosaicTiles, mosaic_members, open_geotiff_source
from looking_glass.imagery.status import TILE_NO_IMAGERY

X, Y, Z = 69554, 105033, 18
W, S, E, N = tile_mercator_bounds(X, Y, Z)
PX = (E - W) / TILE_SIZE  # metres per pixel at zoom 18 in mercator


def write_tif(path: Path, base: int, col0: int, cols: int, rows: int = TILE_SIZE, date: str | None = None,
              count: int = 3) -> Path:
    """A uint8 GeoTIFF in EPSG:3857 whose pixel grid is tile (X, Y)'s, starting ``col0`` pixels
    east of its west edge: band values ``base + (col % 7)`` (never one colour), nodata 0."""
    data = (base + (np.arange(cols) % 7))[None, None, :].repeat(rows, 1).repeat(count, 0).astype(np.uint8)
    profile = dict(driver="GTiff", width=cols, height=rows, count=count, dtype="uint8", crs="EPSG:3857",
                   transform=from_origin(W + col0 * PX, N, PX, PX), nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if date is not None:
            dst.update_tags(TIFFTAG_DATETIME=date)
    return path


@pytest.fixture
def scenes(tmp_path):
    """old.tif: 2020, tiles X and X+1 whole; new.tif: 2023, the west half of tile X only."""
    old = write_tif(tmp_path / "old.tif", 100, 0, 2 * TILE_SIZE, date="2020:01:02 10:00:00")
    new = write_tif(tmp_path / "new.tif", 200, 0, TILE_SIZE // 2, date="2023:06:01 09:30:00")
    return old, new


def test_the_tiff_datetime_tag_is_the_capture_date(scenes):
    old, _ = scenes
    with GeoTiffTiles(str(old)) as src:
        tile = src.fetch(X, Y, Z)
    assert tile.capture_date == "2020-01-02"
    assert tile.valid_fraction == 1.0


def test_a_registered_date_overrides_the_tag_and_a_bad_tag_is_refused(tmp_path, scenes):
    old, _ = scenes
    with GeoTiffTiles(str(old), capture_date="2019-05-06") as src:
        assert src.fetch(X, Y, Z).capture_date == "2019-05-06"
    bad = write_tif(tmp_path / "bad.tif", 50, 0, 64, date="last tuesday")
    with pytest.raises(GeoTiffError, match="bad.tif: capture date 'last tuesday' does not parse.*NAME=SOURCE@"):
        GeoTiffTiles(str(bad))
    with GeoTiffTiles(str(bad), capture_date="2018-01-01") as src:  # the registered date wins
        assert src.captured.year == 2018


def test_half_covered_tile_has_half_valid_fraction(scenes):
    _, new = scenes
    with GeoTiffTiles(str(new)) as src:
        tile = src.fetch(X, Y, Z)
    assert tile.valid_fraction == pytest.approx(0.5, abs=0.01)


def test_newest_image_wins_and_older_fills_its_gaps(scenes):
    old, new = scenes
    # Given oldest first: the rule sorts by date, not by the order given.
    with open_geotiff_source([str(old), str(new)]) as mosaic:
        assert isinstance(mosaic, MosaicTiles)
        assert [Path(i.source).name for i in mosaic.images] == ["new.tif", "old.tif"]
        tile = mosaic.fetch(X, Y, Z)
        east = mosaic.fetch(X + 1, Y, Z)
        outside = mosaic.fetch(X - 1, Y, Z)
    img = tile.image.astype(int)
    assert (img[:, :120, 0] >= 200).all()  # west half: the 2023 scene
    assert ((img[:, 136:, 0] >= 100) & (img[:, 136:, 0] < 110)).all()  # east half: the 2020 scene
    assert tile.capture_date == "2023-06-01,2020-01-02"
    assert tile.valid_fraction == 1.0
    assert east.capture_date == "2020-01-02"  # the new scene does not reach it
    assert outside.status == TILE_NO_IMAGERY


def test_ties_and_undated_images_keep_the_order_given(tmp_path):
    a = write_tif(tmp_path / "a.tif", 100, 0, TILE_SIZE)
    b = write_tif(tmp_path / "b.tif", 200, 0, TILE_SIZE)
    with open_geotiff_source(f"{b},{a}") as mosaic:
        tile = mosaic.fetch(X, Y, Z)
    assert (tile.image[..., 0] >= 200).all()  # b was given first
    assert tile.capture_date is None  # neither says when


def test_a_vrt_and_a_mosaicjson_name_their_images(tmp_path, scenes):
    old, new = scenes
    vrt = tmp_path / "m.vrt"
    vrt.write_text(
        "<VRTDataset rasterXSize='512' rasterYSize='256'><VRTRasterBand dataType='Byte' band='1'>"
        "<SimpleSource><SourceFilename relativeToVRT='1'>new.tif</SourceFilename></SimpleSource>"
        "<SimpleSource><SourceFilename relativeToVRT='1'>old.tif</SourceFilename></SimpleSource>"
        "</VRTRasterBand></VRTDataset>"
    )
    assert [m.source for m in mosaic_members(str(vrt))] == [str(new), str(old)]
    doc = tmp_path / "m.json"
    doc.write_text(json.dumps({"mosaicjson": "0.0.3", "tiles": {"0320": ["old.tif", "new.tif"], "0321": ["old.tif"]}}))
    assert [m.source for m in mosaic_members(str(doc))] == [str(old), str(new)]
    with open_geotiff_source(str(doc)) as mosaic:
        assert mosaic.fetch(X, Y, Z).capture_date == "2023-06-01,2020-01-02"


def stac_item(item_id: str, href: str, when: str) -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "properties": {"datetime": when},
            "assets": {"visual": {"href": href, "type": "image/tiff; application=geotiff", "roles": ["visual"]}}}


def test_stac_item_datetimes_order_the_mosaic(tmp_path, scenes):
    # STAC dates win over the TIFF tags: here the 'old' file is the newer item.
    doc = tmp_path / "items.geojson"
    doc.write_text(json.dumps({"type": "FeatureCollection", "features": [
        stac_item("n", "new.tif", "2021-01-01T00:00:00Z"), stac_item("o", "old.tif", "2024-02-03T12:00:00Z")]}))
    with open_geotiff_source(str(doc)) as mosaic:
        tile = mosaic.fetch(X, Y, Z)
    assert tile.capture_date == "2024-02-03"  # the 2024 image covers the whole tile
    assert (tile.image[..., 0] < 110).all()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a readable mosaic document"),
        ('{"type": "Polygon"}', "a GeoJSON Polygon geometry, not imagery"),
        ('{"mosaicjson": "0.0.3", "tiles": []}', "without a 'tiles' object"),
        (json.dumps({"type": "FeatureCollection", "features": []}), "names no image"),
        (json.dumps({"type": "Feature", "id": "i", "properties": {"datetime": "soon"},
                     "assets": {"visual": {"href": "old.tif"}}}), "capture date 'soon' does not parse"),
        (json.dumps({"type": "Feature", "id": "i", "properties": {},
                     "assets": {"visual": {"href": "https://example.com/a.tif"}}}), "not a local path or s3:// URI"),
        (json.dumps({"type": "Feature", "id": "i", "properties": {},
                     "assets": {"a": {"href": "a.tif", "type": "image/tiff"}, "b": {"href": "b.tif", "type": "image/tiff"}}}),
         "cannot tell which asset"),
    ],
)
def test_bad_mosaic_documents_are_refused_with_the_reason(tmp_path, scenes, content, message):
    doc = tmp_path / "bad.json"
    doc.write_text(content)
    with pytest.raises(MosaicError, match=message):
        open_geotiff_source(str(doc))


def test_bad_vrt_missing_images_and_band_count_mismatch(tmp_path, scenes):
    old, _ = scenes
    vrt = tmp_path / "bad.vrt"
    vrt.write_text("<VRTDataset><unclosed>")
    with pytest.raises(MosaicError, match="not a readable VRT"):
        open_geotiff_source(str(vrt))
    with pytest.raises(GeoTiffError, match="missing.tif: no such file"):
        open_geotiff_source(f"{old},{tmp_path / 'missing.tif'}")
    with pytest.raises(MosaicError, match="no such file"):
        open_geotiff_source(str(tmp_path / "nowhere.json"))
    grey = write_tif(tmp_path / "grey.tif", 100, 0, 64, count=1)
    with pytest.raises(MosaicError, match="same number of bands.*old.tif: 3.*grey.tif: 1"):
        open_geotiff_source([str(old), str(grey)])
    with pytest.raises(GeoTiffError, match="capture date 'someday' does not parse"):
        open_geotiff_source(str(old), capture_date="someday")


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01", (2024, 5, 1, 0)),
    ("2024:05:01 13:00:00", (2024, 5, 1, 13)),
    ("2024-05-01T13:00:00+02:00", (2024, 5, 1, 11)),
    ("2024-05-01T13:00:00Z", (2024, 5, 1, 13)),
])
def test_capture_date_forms(text, expected):
    d = parse_capture_date(text, "x")
    assert (d.year, d.month, d.day, d.hour) == expected


@pytest.mark.parametrize("text", ["", "2024-13-01", "01/05/2024", "2024:05:01"])
def test_capture_dates_that_do_not_parse(text):
    with pytest.raises(CaptureDateError, match="x: capture date"):
        parse_capture_date(text, "x")


def test_serve_tiles_serves_a_mosaic_and_refuses_a_bad_one(tmp_path, scenes):
    import re
    import signal
    import subprocess
    import sys

    import requests

    from looking_glass.imagery.tiles import decode_tile

    old, new = scenes
    proc = subprocess.Popen(
        [sys.executable, "-m", "looking_glass.cli.main", "serve-tiles", f"{old},{new}", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/\{z\}/\{x\}/\{y\}\.png", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        served = decode_tile(X, Y, Z, requests.get(f"{match.group(1)}/{Z}/{X}/{Y}.png", timeout=10).content)
        with open_geotiff_source([str(old), str(new)]) as mosaic:
            assert np.array_equal(served.image, mosaic.fetch(X, Y, Z).image)
        assert requests.get(f"{match.group(1)}/{Z}/{X - 1}/{Y}.png", timeout=10).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    bad = subprocess.run([sys.executable, "-m", "looking_glass.cli.main", "serve-tiles", f"{old},x.png"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "'x.png' does not end in .tif or .tiff" in bad.stderr


def test_the_aoi_command_prints_the_footprint_of_an_image_or_a_mosaic(tmp_path, scenes):
    import subprocess
    import sys

    import shapely.geometry

    from looking_glass.grid import tile_bounds
    from looking_glass.tiling.aoi import parse_aoi
    from looking_glass.tiling.cover import iter_tiles, tile_runs

    old, new = scenes
    proc = subprocess.run([sys.executable, "-m", "looking_glass.cli.main", "aoi", f"{new},{old}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    aoi = parse_aoi(proc.stdout.encode())
    assert aoi.name == "new-footprint"
    # The union of both images is exactly tiles X and X+1 (old.tif): in lon/lat, those two tiles.
    w, s, _, n = tile_bounds(X, Y, Z)
    e = tile_bounds(X + 1, Y, Z)[2]
    assert aoi.geometry.symmetric_difference(shapely.geometry.box(w, s, e, n)).area < 1e-6 * aoi.geometry.area
    assert list(iter_tiles(tile_runs(aoi.geometry))) == [(X, Y, Z), (X + 1, Y, Z)]
    bad = subprocess.run([sys.executable, "-m", "looking_glass.cli.main", "aoi", str(tmp_path / "none.tif")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "none.tif: no such file" in bad.stderr and bad.stdout == ""


@pytest.mark.parametrize("content, what", [
    ({"type": "Polygon", "coordinates": []}, "a GeoJSON Polygon geometry"),
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}, "properties": {}},
     "a GeoJSON point feature without STAC assets"),
    ({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []}, "properties": {}},
        {"type": "Feature", "geometry": None, "properties": {}}]},
     "a GeoJSON of 1 polygon and 1 geometry-less features"),
    ({"type": "Collection", "stac_version": "1.0.0", "id": "c", "links": []}, r"a STAC Collection \(its items are not in it.*\)"),
    ({"format": "looking-glass-chips", "version": 1}, r"a prepared dataset's manifest \(looking-glass-chips\)"),
    ({"hello": 1}, r"a JSON object \(hello\) that is neither MosaicJSON nor STAC"),
    ([1, 2], "a JSON list"),
])
def test_json_that_is_not_imagery_says_what_it_is_and_what_imagery_is(tmp_path, content, what):
    doc = tmp_path / "thing.geojson"
    doc.write_text(json.dumps(content))
    with pytest.raises(MosaicError, match=f"thing.geojson: {what}, not imagery: give a GeoTIFF/COG, .*--truth"):
        mosaic_members(str(doc))


def test_building_footprints_given_as_imagery_are_named_as_footprints():
    """The new-user mistake: the SpaceNet sample's footprints (43 polygons, no STAC) as imagery."""
    footprints = Path(__file__).resolve().parents[2] / "data" / "spacenet_atlanta_sample" / "buildings.geojson"
    with pytest.raises(MosaicError, match="buildings.geojson: a GeoJSON of 43 polygon features, not imagery: ") as err:
        open_geotiff_source(str(footprints))
    assert "has no assets" not in str(err.value)


def test_a_stac_item_needs_no_stac_version_but_a_stac_version_without_assets_is_still_stac(tmp_path, scenes):
    """Only a document with no STAC sign at all is called not imagery: an item with assets is
    read as before, and one with a stac_version but no assets is told its assets are missing."""
    item = {"type": "Feature", "id": "a", "properties": {}, "assets": {"visual": {"href": "old.tif"}}}
    (tmp_path / "one.json").write_text(json.dumps(item))
    assert [m.source for m in mosaic_members(str(tmp_path / "one.json"))] == [str(tmp_path / "old.tif")]
    (tmp_path / "bare.json").write_text(json.dumps({"type": "Feature", "id": "b", "stac_version": "1.0.0", "properties": {}}))
    with pytest.raises(MosaicError, match="item b: the STAC item has no assets"):
        mosaic_members(str(tmp_path / "bare.json"))

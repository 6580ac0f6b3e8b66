"""A GeoTIFF whose CRS tag is wrong (metres tagged EPSG:4326, or far outside its projection) is
refused with one clear error naming the file, by the imagery reader and the commands that open it."""

import numpy as np
import pytest

from looking_glass.cli.main import main
from looking_glass.imagery.geotiff import GeoTiffError, GeoTiffTiles


def write_tif(path, crs: str, west: float, north: float) -> str:
    """A small 3-band uint8 GeoTIFF (16 x 16 px of 0.5 units) with its corner at (west, north)."""
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=3, dtype="uint8",
                       crs=crs, transform=from_origin(west, north, 0.5, 0.5)) as dst:
        dst.write(np.full((3, 16, 16), 120, np.uint8))
    return str(path)


def test_utm_metres_tagged_4326_is_refused(tmp_path):
    path = write_tif(tmp_path / "utm_as_4326.tif", "EPSG:4326", 500000.0, 5000000.0)
    with pytest.raises(GeoTiffError, match=r"utm_as_4326\.tif: bounds .* outside \[-180, 180\] x \[-90, 90\].*CRS tag looks wrong"):
        GeoTiffTiles(path)


def test_coordinates_proj_cannot_project_are_refused(tmp_path):
    path = write_tif(tmp_path / "far.tif", "EPSG:32633", 5e7, 5e7)
    with pytest.raises(GeoTiffError, match=r"far\.tif: its footprint cannot be projected .* CRS tag looks wrong"):
        GeoTiffTiles(path)


def test_a_right_tag_still_opens(tmp_path):
    with GeoTiffTiles(write_tif(tmp_path / "ok.tif", "EPSG:32633", 500000.0, 5000000.0)) as image:
        assert image.outline.area > 0


@pytest.mark.parametrize("command", [["aoi"], ["demo", "--imagery"], ["up", "--imagery"]])
def test_commands_end_with_one_line_not_a_traceback(tmp_path, capsys, command):
    path = write_tif(tmp_path / "wrong.tif", "EPSG:4326", 500000.0, 5000000.0)
    with pytest.raises(SystemExit) as err:
        main([*command, path])
    assert err.value.code == 2
    assert "wrong.tif" in str(err.value) and "CRS tag looks wrong" in str(err.value)


import numpy as np
import pytest

from looking_glass.grid import (
    ZOOM,
    ground_resolution_m,
    pixel_area_m2,
    pixel_row_areas_m2,
    quadkey,
    tile_center_lat,
    tile_from_quadkey,
)
from looking_glass.model.segmenter import building_area_m2

# Hand-computed: 156543.03392 * cos(lat) / 2**18 metres per pixel.
#   equator: 156543.03392 / 262144 = 0.597164283...
#   60 deg:  half of that = 0.298582141...
#   45 deg:  0.597164283 * 0.707106781 = 0.4222589
#   21 deg:  0.597164283 * 0.933580426 = 0.5575009
@pytest.mark.parametrize(
    "lat, expected",
    [(0.0, 0.5971642834), (60.0, 0.2985821417), (45.0, 0.4222589), (-45.0, 0.4222589), (21.0, 0.5575009)],
)
def test_ground_resolution_matches_hand_computed_values(lat, expected):
    assert ground_resolution_m(lat) == pytest.approx(expected, rel=1e-6)


def test_fixed_031m_pixel_of_the_original_is_wrong_away_from_21_degrees():
    # The 2018 code used 0.31 m/px: at the equator the true zoom-18 pixel is 0.597 m, 3.7x the area.
    assert ground_resolution_m(0.0) ** 2 / 0.31**2 == pytest.approx(3.71, abs=0.01)


def test_pixel_area_uses_tile_centre_latitude():
    # Tile 0/0 at zoom 1 spans latitudes 0..85.05; its centre row is at ~66.51 degrees.
    assert tile_center_lat(0, 0, 1) == pytest.approx(66.5132604, abs=1e-6)
    x, y = 152950, 132486  # near Kigali, lat -1.95
    lat = tile_center_lat(x, y, ZOOM)
    assert lat == pytest.approx(-1.95, abs=0.01)
    assert pixel_area_m2(x, y) == pytest.approx(ground_resolution_m(lat) ** 2, rel=1e-12)


def test_row_areas_sum_to_tile_area_and_vary_with_latitude():
    x, y = 100, 60000  # high northern latitude, where cos(lat) changes fastest
    rows = pixel_row_areas_m2(x, y)
    assert rows.shape == (256,)
    assert rows[0] < rows[-1]  # top rows are further north, so smaller
    assert rows.mean() == pytest.approx(pixel_area_m2(x, y), rel=1e-6)


def test_building_area_of_full_and_empty_masks():
    x, y = 152950, 132486
    full = np.ones((256, 256), bool)
    assert building_area_m2(full, x, y, ZOOM) == pytest.approx(pixel_row_areas_m2(x, y).sum() * 256)
    assert building_area_m2(np.zeros((256, 256), bool), x, y, ZOOM) == 0.0
    half = np.zeros((256, 256), bool)
    half[:, :128] = True
    assert building_area_m2(half, x, y, ZOOM) == pytest.approx(building_area_m2(full, x, y, ZOOM) / 2)
    # At the equator a full tile is (256 * 0.597164 m)^2 = 23,370 m2.
    assert building_area_m2(full, 0, 2**17, ZOOM) == pytest.approx((256 * 0.5971642834) ** 2, rel=1e-5)


def test_quadkey_round_trip():
    qk = quadkey(152950, 132486, 18)
    assert len(qk) == 18
    assert tile_from_quadkey(qk) == (152950, 132486, 18)

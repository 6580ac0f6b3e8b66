
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


# ---- one address per fact: projection, tile area and tile square (issue 11) --------------------
# Outside facts: web mercator's tile 0/0/0 spans +-180 degrees of longitude and +-85.0511287798
# degrees of latitude (atan(sinh(pi))), +-20037508.342789244 m (pi * 6378137) in EPSG:3857.


def test_tile_zero_bounds_and_square():
    from looking_glass.grid import MAX_LATITUDE, tile_bounds, tile_box, tile_mercator_bounds, tile_polygon

    assert tile_bounds(0, 0, 0) == pytest.approx((-180.0, -85.0511287798, 180.0, 85.0511287798))
    assert MAX_LATITUDE == pytest.approx(np.degrees(np.arctan(np.sinh(np.pi))), abs=1e-12)
    half = np.pi * 6378137.0
    assert tile_mercator_bounds(0, 0, 0) == pytest.approx((-half, -half, half, half))
    ring = tile_polygon(0, 0, 0)["coordinates"][0]
    assert tile_polygon(0, 0, 0)["type"] == "Polygon"
    assert ring[0] == ring[-1] == [-180.0, tile_bounds(0, 0, 0)[1]]
    # RFC 7946: exterior rings are counter-clockwise (positive shoelace area).
    xs, ys = np.array(ring).T
    assert 0.5 * np.sum(xs[:-1] * ys[1:] - xs[1:] * ys[:-1]) > 0
    assert tile_box(0, 0, 0).bounds == pytest.approx(tile_bounds(0, 0, 0))
    assert tile_box(0, 0, 0, mercator=True).bounds == pytest.approx((-half, -half, half, half))


def test_lon_lat_to_tile_position_and_back():
    from looking_glass.grid import col_of_lon, lat_of_row_edge, lon_of_col, row_of_lat

    n = 2**ZOOM
    assert col_of_lon(-180.0, ZOOM) == 0 and col_of_lon(180.0, ZOOM) == n and col_of_lon(0.0, ZOOM) == n / 2
    assert row_of_lat(0.0, ZOOM) == pytest.approx(n / 2)
    assert row_of_lat(85.0511287798066, ZOOM) == pytest.approx(0.0, abs=1e-6)
    assert lat_of_row_edge(0, 0) == pytest.approx(85.0511287798066) and lat_of_row_edge(1, 0) == pytest.approx(-85.0511287798066)
    # The same tiles as mercantile (an independent implementation) finds.
    import mercantile

    for lon, lat in [(30.06, -1.95), (-84.39, 33.75), (139.69, 35.69), (-0.001, 51.5)]:
        t = mercantile.tile(lon, lat, ZOOM)
        assert (int(col_of_lon(lon, ZOOM)), int(row_of_lat(lat, ZOOM))) == (t.x, t.y)
    lats = np.array([-80.0, -45.0, -1.95, 0.0, 21.0, 60.0, 85.0])
    assert lat_of_row_edge(row_of_lat(lats, ZOOM), ZOOM) == pytest.approx(lats, abs=1e-9)
    assert lon_of_col(col_of_lon(np.array([-179.5, 0.0, 30.06]), ZOOM), ZOOM) == pytest.approx([-179.5, 0.0, 30.06])


def test_latitudes_beyond_web_mercator_are_clamped_to_its_edge():
    from looking_glass.grid import row_of_lat

    assert row_of_lat(89.9, 3) == pytest.approx(0.0, abs=1e-9)
    assert row_of_lat(-90.0, 3) == pytest.approx(8.0, abs=1e-9)
    assert np.isfinite(row_of_lat(np.array([90.0, -90.0]), ZOOM)).all()


def test_tile_area_sums_pixel_rows_and_matches_the_sphere():
    from looking_glass.grid import tile_area_m2

    # Equator, zoom 18: (256 px * 156543.03392 / 2**18 m)^2 = 23,370 m2.
    assert tile_area_m2(2**17) == pytest.approx((256 * 0.5971642834) ** 2, rel=1e-5)
    assert tile_area_m2(60000) == pytest.approx(pixel_row_areas_m2(0, 60000).sum() * 256, rel=1e-12)
    # The whole map (tile 0/0/0) is the sphere's zone between +-85.0511 degrees:
    # 2 * pi * R^2 * (sin(85.0511) - sin(-85.0511)), R = 6378137 m.
    zone = 2 * np.pi * 6378137.0**2 * 2 * np.sin(np.radians(85.0511287798066))
    assert tile_area_m2(0, 0) == pytest.approx(zone, rel=1e-4)
    rows = np.array([60000, 2**17, 60000])
    areas = tile_area_m2(rows)
    assert areas.shape == (3,) and areas[0] == areas[2] == tile_area_m2(60000)

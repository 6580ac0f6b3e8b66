"""The tile cover against a brute-force shapely reference, and its edge semantics."""

import mercantile
import numpy as np
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from looking_glass.tiling.cover import count_tiles, iter_tiles, reference_cover, tile_runs


def cover_set(geom, zoom):
    return set(iter_tiles(tile_runs(geom, zoom), zoom))


def tile_box(x, y, z):
    return shapely.box(*mercantile.bounds(x, y, z))


def test_exactly_one_tile_gives_that_tile():
    assert cover_set(tile_box(152950, 132486, 18), 18) == {(152950, 132486, 18)}


def test_a_zoom16_tile_gives_its_16_children():
    parent = mercantile.Tile(38237, 33121, 16)
    expected = {(t.x, t.y, t.z) for t in mercantile.children(parent, zoom=18)}
    assert cover_set(tile_box(*parent), 18) == expected


def test_tiles_that_only_touch_along_an_edge_or_corner_are_out():
    b = mercantile.bounds(1000, 1000, 12)
    # A thin triangle whose only contact with the neighbouring column is the shared edge.
    triangle = shapely.Polygon([(b.west, b.south), (b.east, b.north), (b.west, b.north)])
    assert cover_set(triangle, 12) == {(1000, 1000, 12)}


def test_runs_are_sorted_disjoint_and_count_matches():
    geom = shapely.Point(30.06, -1.95).buffer(0.01)
    runs = tile_runs(geom, 17)
    assert count_tiles(runs) == len(cover_set(geom, 17))
    for (y0, a0, b0), (y1, a1, _b1) in zip(runs[:-1], runs[1:]):
        assert (y0, a0) < (y1, a1)
        assert y0 != y1 or b0 < a1  # separate runs never touch within a row


def test_hole_removes_interior_tiles():
    outer = shapely.Point(30.06, -1.95).buffer(0.01)
    inner = shapely.Point(30.06, -1.95).buffer(0.004)
    ring = outer.difference(inner)
    got = cover_set(ring, 17)
    assert got == reference_cover(ring, 17)
    assert len(got) < len(cover_set(outer, 17))


def test_multipolygon_parts_far_apart():
    a, b = shapely.box(10, 10, 10.01, 10.01), shapely.box(-70, -30, -69.99, -29.99)
    got = cover_set(shapely.MultiPolygon([a, b]), 16)
    assert got == reference_cover(a, 16) | reference_cover(b, 16)


@st.composite
def random_polygons(draw):
    zoom = draw(st.sampled_from([8, 12, 15, 18]))
    size = 360 / 2**zoom
    cx = draw(st.floats(-170, 170))
    cy = draw(st.floats(-80, 80))
    n = draw(st.integers(3, 12))
    angles = np.sort(np.array(draw(st.lists(st.floats(0, 2 * np.pi), min_size=n, max_size=n))))
    radii = np.array(draw(st.lists(st.floats(0.2, 5.0), min_size=n, max_size=n))) * size
    # Rounded to 7 decimals (about 1 cm), as real GeoJSON is; sub-micrometre slivers are rounding
    # noise on which no two exact-area computations agree.
    pts = np.round(np.column_stack([cx + radii * np.cos(angles), cy + 0.7 * radii * np.sin(angles)]), 7)
    poly = shapely.Polygon(pts)
    if draw(st.booleans()):
        hole = shapely.Point(cx, cy).buffer(size * draw(st.floats(0.1, 1.0)), quad_segs=3)
        hole = shapely.set_precision(hole, 1e-7)
        if poly.is_valid:
            poly = poly.difference(hole)
    return poly, zoom


@settings(max_examples=int(__import__("os").environ.get("LG_HYPOTHESIS_EXAMPLES", "150")), deadline=None)
@given(random_polygons())
def test_cover_equals_bruteforce_reference(case):
    poly, zoom = case
    # Coordinates within 1e-9 tile of a tile edge are snapped onto it (by design), so slivers
    # thinner than that are outside what the reference comparison can judge.
    assume(poly.is_valid and poly.area >= 1e-6 * (360 / 2**zoom) ** 2)
    assert cover_set(poly, zoom) == reference_cover(poly, zoom), poly.wkt


@st.composite
def lattice_polygons(draw):
    """Unions of boxes and triangles whose vertices sit on tile corners, edge midpoints and
    quarter points: edges along tile edges, through corners, vertical and horizontal pieces,
    the cases where 'touching is out' matters most."""
    zoom = draw(st.sampled_from([10, 14, 18]))
    n = 2**zoom
    x0 = draw(st.integers(0, n - 40))
    y0 = draw(st.integers(1, n - 40))
    step = st.integers(0, 32).map(lambda q: q / 4)  # quarter-tile lattice
    shapes = []
    for _ in range(draw(st.integers(1, 4))):
        ax, ay, bx, by = (draw(step) for _ in range(4))
        if draw(st.booleans()):
            shapes.append(shapely.box(min(ax, bx), min(ay, by), max(ax, bx) + 0.25, max(ay, by) + 0.25))
        else:
            cx, cy = draw(step), draw(step)
            shapes.append(shapely.Polygon([(ax, ay), (bx, by), (cx, cy)]))
    geom = shapely.union_all([g for g in shapes if g.is_valid and g.area > 0])
    assume(not geom.is_empty and geom.area > 0)

    def to_lonlat(xy):
        x = x0 + xy[:, 0]
        y = y0 + xy[:, 1]
        lat = np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * y / n))))
        return np.column_stack([x / n * 360 - 180, lat])

    return shapely.transform(geom, to_lonlat), zoom


@settings(max_examples=int(__import__("os").environ.get("LG_HYPOTHESIS_EXAMPLES", "150")), deadline=None)
@given(lattice_polygons())
def test_cover_of_tile_lattice_shapes_equals_reference(case):
    geom, zoom = case
    assume(geom.is_valid)
    assert cover_set(geom, zoom) == reference_cover(geom, zoom), geom.wkt


def test_grid_aligned_polygon_snaps_to_edges():
    # Built from tile edges with rounding noise: must not pick up neighbours.
    b1 = mercantile.bounds(500, 600, 11)
    b2 = mercantile.bounds(502, 601, 11)
    box = shapely.box(b1.west + 1e-13, b2.south - 1e-13, b2.east, b1.north)
    assert cover_set(box, 11) == {(x, y, 11) for x in (500, 501, 502) for y in (600, 601)}


def test_antimeridian_as_split_multipolygon_and_as_ring_beyond_180_agree():
    import json

    from looking_glass.tiling.aoi import parse_aoi

    ring = [[179.995, -16.8], [180.004, -16.8], [180.004, -16.79], [179.995, -16.79], [179.995, -16.8]]
    east = [[179.995, -16.8], [180, -16.8], [180, -16.79], [179.995, -16.79], [179.995, -16.8]]
    west = [[-180, -16.8], [-179.996, -16.8], [-179.996, -16.79], [-180, -16.79], [-180, -16.8]]
    crossing = parse_aoi(json.dumps({"type": "Polygon", "coordinates": [ring]}).encode())
    split = parse_aoi(json.dumps({"type": "MultiPolygon", "coordinates": [[east], [west]]}).encode())
    assert any("antimeridian" in w for w in crossing.warnings)
    got = cover_set(crossing.geometry, 18)
    assert got == cover_set(split.geometry, 18)
    xs = {x for x, _, _ in got}
    assert 0 in xs and 2**18 - 1 in xs  # both sides of the antimeridian
    assert got == reference_cover(shapely.box(179.995, -16.8, 180, -16.79), 18) | reference_cover(
        shapely.box(-180, -16.8, -179.996, -16.79), 18
    )

"""Instances of the two heads and their traced pieces, on hand-made masks and distance fields."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from scipy import ndimage

from looking_glass.datasets.labels import signed_distance_m
from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.instances import binary_instances, instances, sdt_instances
from looking_glass.outlines.vectorize import (
    TilePieces,
    pieces_from_labels,
    tile_pieces,
    trace_labels,
)

RES = 0.6  # metres per pixel of the hand-made distance fields


def dumbbell() -> np.ndarray:
    """Two 24x24 px buildings touching through a 4 px wide, 6 px long neck."""
    m = np.zeros((64, 80), bool)
    m[10:34, 8:32] = True
    m[10:34, 38:62] = True
    m[20:24, 32:38] = True
    return m


def test_binary_head_regions_are_four_connected():
    p = np.zeros((20, 20), np.float32)
    p[2:6, 2:6] = 0.9
    p[6:9, 6:9] = 0.8  # touches the first only diagonally: another building
    p[12:18, 12:18] = 0.4  # below the threshold
    labels, n = binary_instances(p)
    assert n == 2 and labels.dtype == np.int32
    assert binary_instances(p, threshold=0.3)[1] == 3
    assert binary_instances(p[..., None])[1] == 2  # (H, W, 1) accepted


def test_sdt_head_splits_touching_buildings_at_the_neck():
    sdt = signed_distance_m(dumbbell(), RES)
    labels, n = sdt_instances(sdt)
    assert n == 2
    left, right = labels[20, 15], labels[20, 50]
    assert left and right and left != right
    assert (labels > 0).sum() == dumbbell().sum()  # every building pixel in one instance
    # the binary head sees one region
    assert binary_instances(dumbbell())[1] == 1


@pytest.mark.parametrize("shape", ["rectangle", "L"])
def test_sdt_head_keeps_rectangles_and_l_shapes_whole(shape):
    m = np.zeros((64, 64), bool)
    m[10:30, 5:60] = True
    if shape == "L":
        m[10:58, 5:25] = True
    labels, n = sdt_instances(signed_distance_m(m, RES))
    assert n == 1 and (labels > 0).sum() == m.sum()


def test_sdt_head_thin_buildings_still_found_and_deeper_split_depth_splits_less():
    m = np.zeros((40, 40), bool)
    m[5:7, 5:35] = True  # 2 px thin: shallower than the split depth
    labels, n = sdt_instances(signed_distance_m(m, RES), split_depth_m=2.0)
    assert n == 1 and (labels > 0).sum() == m.sum()
    assert sdt_instances(signed_distance_m(dumbbell(), RES), split_depth_m=20.0)[1] == 1


def test_no_building_and_bad_inputs():
    assert sdt_instances(np.full((8, 8), -3.0))[1] == 0
    assert binary_instances(np.zeros((8, 8)))[1] == 0
    for empty in (np.zeros((256, 256), bool), np.full((256, 256), 0.2, np.float32)):  # the shortcut: ndimage's answer
        labels, n = binary_instances(empty)
        expected, n_expected = ndimage.label(empty >= 0.5, structure=ndimage.generate_binary_structure(2, 1))
        assert n == n_expected == 0 and labels.dtype == expected.dtype == np.int32
        assert labels.shape == (256, 256) and np.array_equal(labels, expected)
    with pytest.raises(OutlinesError):
        instances(np.zeros((8, 8)), "semantic")
    with pytest.raises(OutlinesError):
        binary_instances(np.zeros((2, 8, 8)))
    with pytest.raises(OutlinesError):
        sdt_instances(np.zeros((8, 8)), split_depth_m=0)


def test_traced_polygons_are_exact_pixel_polygons_with_holes():
    m = np.zeros((32, 32), bool)
    m[4:20, 4:20] = True
    m[8:12, 8:12] = False  # a courtyard
    m[14:16, 6:9] = False  # and a smaller one, of another shape
    labels, _ = binary_instances(m)
    polys = trace_labels(labels, origin=(100, 200))
    (poly,) = polys.values()
    assert poly.geom_type == "Polygon" and len(poly.interiors) == 2
    assert poly.area == m.sum()
    assert poly.bounds == (104.0, 204.0, 120.0, 220.0)


def test_tile_pieces_world_pixels_edges_and_round_trip():
    m = np.zeros((256, 256), bool)
    m[0:10, 100:120] = True  # on the north edge
    m[50:60, 246:256] = True  # on the east edge
    m[100:110, 100:110] = True  # inside
    p = tile_pieces(m.astype(np.float32), 18, 3, 5)
    assert p.tile == (18, 3, 5) and len(p.polygons) == 3
    assert all(shapely.get_coordinates(g).min(axis=0).tolist() >= [3 * 256, 5 * 256] for g in p.polygons.values())
    assert len(p.touching()) == 2
    assert (p.edges["n"] > 0).sum() == 20 and (p.edges["e"] > 0).sum() == 10 and not p.edges["s"].any()
    back = TilePieces.from_dict(p.to_dict())
    assert back.tile == p.tile and back.polygons.keys() == p.polygons.keys()
    assert all(back.polygons[k].equals(p.polygons[k]) for k in p.polygons)
    assert all((back.edges[k] == p.edges[k]).all() for k in p.edges)
    with pytest.raises(OutlinesError):
        TilePieces.from_dict({"tile": [18, 1, 2]})
    with pytest.raises(OutlinesError):
        pieces_from_labels(np.zeros((4, 5), np.int32), 18, 0, 0)

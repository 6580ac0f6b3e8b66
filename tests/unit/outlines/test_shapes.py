"""Simplification and regularisation of traced building shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from looking_glass.outlines.instances import binary_instances
from looking_glass.outlines.shapes import dominant_angle, regularise, simplify
from looking_glass.outlines.vectorize import trace_labels


def raster_polygon(poly, size=96):
    """The pixel-edge polygon of ``poly`` rasterised with the pixel-centre rule."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    inside = shapely.contains_xy(poly, xx, yy)
    (traced,) = trace_labels(binary_instances(inside)[0]).values()
    return traced


def right_angles(poly) -> bool:
    ring = np.asarray(poly.exterior.coords)[:-1]
    d = np.roll(ring, -1, axis=0) - ring
    nxt = np.roll(d, -1, axis=0)
    cos = (d * nxt).sum(1) / (np.hypot(*d.T) * np.hypot(*nxt.T))
    return bool(np.all(np.abs(cos) < 1e-6))


def rotated(shape, angle_deg, about=(48, 48)):
    return shapely.affinity.rotate(shape, angle_deg, origin=about)


@pytest.mark.parametrize("angle", [0, 17, 30, 45, 62])
def test_a_rotated_rectangle_comes_back_square_cornered(angle):
    truth = rotated(shapely.box(20, 35, 76, 61), angle)
    traced = raster_polygon(truth)
    simple = simplify(traced, 1.0)
    assert len(simple.exterior.coords) < len(traced.exterior.coords) or angle == 0
    reg = regularise(simple)
    assert len(reg.exterior.coords) == 5 and right_angles(reg)
    assert shapely.area(shapely.intersection(reg, truth)) / shapely.area(shapely.union(reg, truth)) > 0.93
    assert math.degrees(dominant_angle(reg)) == pytest.approx(angle % 90, abs=2) or angle % 90 == 0


def test_an_l_shape_keeps_its_six_corners():
    truth = rotated(shapely.union(shapely.box(16, 20, 80, 44), shapely.box(16, 20, 40, 80)), 25)
    reg = regularise(simplify(raster_polygon(truth), 1.0))
    assert len(reg.exterior.coords) == 7 and right_angles(reg)
    assert shapely.area(shapely.intersection(reg, truth)) / shapely.area(shapely.union(reg, truth)) > 0.9


def test_a_courtyard_is_kept():
    truth = shapely.box(10, 10, 80, 80).difference(shapely.box(30, 30, 60, 60))
    reg = regularise(simplify(raster_polygon(truth), 1.0))
    assert len(reg.interiors) == 1 and reg.area == pytest.approx(truth.area)


def test_a_round_shape_is_left_alone_and_zero_tolerance_is_a_no_op():
    disc = shapely.Point(48, 48).buffer(30, quad_segs=32)
    traced = raster_polygon(disc)
    assert simplify(traced, 0) is traced
    reg = regularise(simplify(traced, 1.0))
    assert reg.is_valid
    assert shapely.area(shapely.intersection(reg, disc)) / shapely.area(shapely.union(reg, disc)) > 0.8

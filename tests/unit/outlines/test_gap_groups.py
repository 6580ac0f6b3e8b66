"""The mapping gap per coarser tile (gap_rollup) and per user polygon (gap_within), and the
predicted buildings nobody has mapped (unmapped_buildings): hand-made boxes, hand-counted."""

from __future__ import annotations

import pytest
import shapely
from outlines_helpers import X0, Y0

from looking_glass.grid import pixel_area_m2, tile_bounds
from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.gap import gap_rollup, gap_summary, gap_within, mapping_gap, unmapped_buildings
from looking_glass.outlines.georef import to_lonlat

S = 256
K = pixel_area_m2(X0, Y0)


def ll(c0, r0, c1, r1):
    """A lon/lat box from pixel columns/rows relative to tile X0/Y0's corner."""
    return to_lonlat(shapely.box(X0 * S + c0, Y0 * S + r0, X0 * S + c1, Y0 * S + r1), 18)


# Two 20 x 20 px buildings in the west tile X0 (one mapped), two in the east tile X0 + 1 (none).
PRED = [ll(10, 10, 30, 30), ll(100, 100, 120, 120), ll(300, 10, 320, 30), ll(400, 100, 420, 120)]
MAPPED = [ll(10, 10, 30, 30)]


def test_a_rollup_sums_the_tiles_and_recomputes_completeness():
    rows = mapping_gap(PRED, MAPPED, tolerance_m=0)
    assert X0 % 2 == 0  # X0 and X0 + 1 share one zoom-17 parent
    (z17,) = gap_rollup(rows, 17)
    assert (z17["z"], z17["x"], z17["y"]) == (17, X0 // 2, Y0 // 2)
    assert z17["predicted_count"] == 4 and z17["mapped_count"] == 1 and z17["rank"] == 1
    assert z17["predicted_area_m2"] == pytest.approx(1600 * K, rel=1e-6)
    assert z17["unmapped_area_m2"] == pytest.approx(1200 * K, rel=1e-6)
    assert z17["completeness"] == pytest.approx(0.25)
    total = gap_summary(rows)
    assert z17["unmapped_area_m2"] == pytest.approx(total["unmapped_area_m2"])
    with pytest.raises(OutlinesError, match="zoom 19"):
        gap_rollup(rows, 19)


def test_polygons_get_their_share_of_area_and_the_buildings_whose_point_they_hold():
    w, s, e, n = tile_bounds(X0, Y0, 18)
    _, _, e2, _ = tile_bounds(X0 + 1, Y0, 18)
    west = {"name": "task-1", "geometry": shapely.box(w, s, e, n)}
    # The east task starts in the middle of the west building at column 100..120 (at 110 px).
    cut = w + (e - w) * 110 / S
    east = {"name": "task-2", "geometry": shapely.box(cut, s, e2, n)}
    rows = {r["name"]: r for r in gap_within(PRED, MAPPED, [west, east], tolerance_m=0)}
    a, b = rows["task-1"], rows["task-2"]
    assert a["predicted_area_m2"] == pytest.approx(800 * K, rel=1e-5)
    assert a["mapped_area_m2"] == pytest.approx(400 * K, rel=1e-5)
    assert a["completeness"] == pytest.approx(0.5, abs=1e-6)
    assert (a["predicted_count"], a["mapped_count"]) == (2, 1)
    assert b["predicted_area_m2"] == pytest.approx((200 + 800) * K, rel=1e-5)  # half of one plus two
    assert b["predicted_count"] == 2  # the cut building's centre (110 px) is on the edge: counted west
    assert b["mapped_count"] == 0 and b["completeness"] == 0.0
    assert b["rank"] == 1 and a["rank"] == 2  # more unmapped area first
    empty = gap_within(PRED, [], [west])[0]
    assert empty["unmapped_area_m2"] == pytest.approx(empty["predicted_area_m2"])
    with pytest.raises(OutlinesError, match="negative"):
        gap_within(PRED, MAPPED, [west], tolerance_m=-1)


def test_the_not_yet_mapped_buildings_are_those_no_mapped_building_touches():
    touching = ll(105, 105, 110, 110)  # a small mapped shape inside the second building
    out = unmapped_buildings(PRED, [*MAPPED, touching])
    assert [p.equals(q) for p, q in zip(out, PRED[2:], strict=True)] == [True, True]
    assert len(unmapped_buildings(PRED, [])) == 4

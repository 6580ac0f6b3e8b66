"""Stitching across tile edges: buildings on edges and corners, holes, touching buildings, gaps in
the cover, order, bounded memory, counting, and the split rate on random mosaics."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from outlines_helpers import X0, Y0, cut_tiles, random_rectangles
from scipy import ndimage

from looking_glass.datasets.labels import signed_distance_m
from looking_glass.grid import pixel_area_m2, tile_bounds
from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.georef import to_world_px
from looking_glass.outlines.stitch import (
    OutlineOptions,
    Stitcher,
    count_by_tile,
    outline_tiles,
)
from looking_glass.outlines.vectorize import building_count, tile_pieces

S = 256
EXACT = OutlineOptions(simplify=0, min_area_m2=0)


def run(mosaic, options=EXACT, **kw):
    return list(outline_tiles(cut_tiles(mosaic.astype(np.float32), **kw), options))


def px_box(r0, r1, c0, c1, x0=X0, y0=Y0):
    return shapely.box(x0 * S + c0, y0 * S + r0, x0 * S + c1, y0 * S + r1)


def as_px(building):
    return to_world_px(building.polygon, 18)


@pytest.mark.parametrize("box, tiles", [
    ((40, 80, 230, 290), 2),  # across the vertical edge between two tiles
    ((230, 290, 40, 80), 2),  # across the horizontal edge
    ((220, 300, 200, 310), 4),  # over the corner shared by four tiles
    ((0, 20, 0, 30), 1),  # on the mosaic's outer corner
])
def test_a_building_cut_by_tile_edges_is_one_polygon(box, tiles):
    m = np.zeros((2 * S, 2 * S), bool)
    m[box[0]:box[1], box[2]:box[3]] = True
    (b,) = run(m)
    assert b.tiles == tiles
    assert as_px(b).symmetric_difference(px_box(*box)).area < 1e-6
    expected = (box[1] - box[0]) * (box[3] - box[2]) * pixel_area_m2(X0, Y0)
    assert b.area_m2 == pytest.approx(expected, rel=1e-4)
    assert b.polygon.exterior.is_ccw  # RFC 7946


def test_holes_across_edges_and_l_shapes_over_three_tiles():
    m = np.zeros((2 * S, 2 * S), bool)
    m[200:320, 200:320] = True
    m[240:280, 240:280] = False  # courtyard centred on the four-tile corner
    (b,) = run(m)
    assert b.tiles == 4 and len(b.polygon.interiors) == 1
    assert not b.polygon.interiors[0].is_ccw
    m = np.zeros((2 * S, 2 * S), bool)
    m[150:250, 150:360] = True  # across the top two tiles ...
    m[250:360, 150:250] = True  # ... and down into the bottom-left: three of four tiles
    (b,) = run(m)
    assert b.tiles == 3
    _, x, y = b.tile
    assert (x - X0, y - Y0) != (1, 1)  # counted where the building is, not in the empty tile


def test_sdt_head_keeps_touching_buildings_apart_even_when_their_neck_is_on_the_edge():
    m = np.zeros((S, 2 * S), bool)
    m[100:140, 200:250] = True
    m[100:140, 262:320] = True
    m[115:119, 250:262] = True  # the neck straddles the edge at column 256
    m[10:40, 230:290] = True  # and one plain building across the edge
    sdt = signed_distance_m(m, 0.6)
    out = list(outline_tiles(cut_tiles(sdt), OutlineOptions(head="sdt", simplify=0, min_area_m2=0)))
    assert sorted(b.tiles for b in out) == [1, 1, 2]
    assert sum(as_px(b).area for b in out) == pytest.approx(m.sum())
    # the binary head joins the dumbbell
    assert len(run(m)) == 2


def test_gaps_in_the_cover_and_order_rules():
    m = np.zeros((3 * S, 3 * S), bool)
    m[240:270, 100:140] = True  # crosses into a tile that never comes
    m[600:620, 600:620] = True
    out = run(m, skip={(0, 1)})
    assert len(out) == 2  # the piece above the missing tile is finished anyway
    st = Stitcher(EXACT)
    st.add(tile_pieces(np.zeros((S, S)), 18, 5, 5))
    with pytest.raises(OutlinesError, match="row-major"):
        st.add(tile_pieces(np.zeros((S, S)), 18, 4, 5))
    with pytest.raises(OutlinesError, match="zoom"):
        st.add(tile_pieces(np.zeros((S, S)), 17, 9, 9))


def test_specks_are_dropped_by_ground_area_after_stitching():
    m = np.zeros((S, 2 * S), bool)
    m[10:13, 254:258] = True  # 12 px: 4.3 m2 near the equator, split 6 + 6 px by the edge
    m[100:110, 100:110] = True  # 100 px: 36 m2
    opts = OutlineOptions(simplify=0, min_area_m2=4.0)
    assert len(run(m, opts)) == 2  # the stitched speck reaches 4 m2
    assert len(run(m, OutlineOptions(simplify=0, min_area_m2=5.0))) == 1
    # at 57 N (row 80000) a pixel covers cos(57)**2 = 0.29 of its equatorial ground: 36 m2 -> 10.4 m2
    north = cut_tiles(m.astype(np.float32), y0=80_000)
    assert [round(b.area_m2, 1) for b in outline_tiles(north, OutlineOptions(simplify=0, min_area_m2=10))] == [10.4]
    assert list(outline_tiles(north, OutlineOptions(simplify=0, min_area_m2=11))) == []


def test_building_count_per_tile_counts_each_building_once():
    m = np.zeros((2 * S, 2 * S), bool)
    m[220:300, 200:240] = True  # centroid in the top-left tile (x 220, y 260 -> bottom row!)
    m[10:30, 10:30] = True
    m[400:420, 400:420] = True
    out = run(m)
    counts = count_by_tile(out)
    assert sum(counts.values()) == 3
    assert counts[(18, X0, Y0 + 1)] == 1 and counts[(18, X0, Y0)] == 1 and counts[(18, X0 + 1, Y0 + 1)] == 1


def test_polygons_are_georeferenced_on_the_tile_grid():
    m = np.zeros((S, S), bool)
    m[0:S, 0:S] = True
    (b,) = run(m)
    w, s, e, n = tile_bounds(X0, Y0, 18)
    assert np.allclose(b.polygon.bounds, (w, s, e, n), atol=1e-12)


def test_memory_stays_bounded_by_the_width_of_the_job():
    cols, rows = 3, 24
    m, _ = random_rectangles((rows * S, cols * S), 600, np.random.default_rng(15))
    st = Stitcher(EXACT)
    open_groups, kept_edges, n = [], [], 0
    for (z, x, y), tile in cut_tiles(m.astype(np.float32)):
        n += len(st.add(tile_pieces(tile, z, x, y)))
        open_groups.append(len(st._members))
        kept_edges.append(len(st._edges))
    n += len(st.finish())
    assert n == ndimage.label(m)[1]
    assert max(kept_edges) <= cols + 1
    # open groups are those on the last two rows' edges: no growth down the job
    assert max(open_groups[-cols * 8:]) <= 3 * max(open_groups[: cols * 8]) + 10


@pytest.mark.parametrize("head", ["binary", "sdt"])
def test_truth_buildings_crossing_tile_edges_are_not_split(head):
    """The issue's goal: of truth buildings that cross a tile edge, fewer than 1% split."""
    m, boxes = random_rectangles((5 * S, 5 * S), 500, np.random.default_rng(15))
    pred = m.astype(np.float32) if head == "binary" else signed_distance_m(m, 0.6)
    out = list(outline_tiles(cut_tiles(pred), OutlineOptions(head=head, simplify=0, min_area_m2=0)))
    polys = np.array([as_px(b) for b in out], dtype=object)
    tree = shapely.STRtree(polys)
    crossing = [b for b in boxes if b[0] // S != (b[1] - 1) // S or b[2] // S != (b[3] - 1) // S]
    assert len(crossing) > 50
    split = 0
    for box in crossing:
        truth = px_box(*box)
        hits = tree.query(truth, predicate="intersects")
        hits = [h for h in hits if shapely.intersection(polys[h], truth).area > 0]
        split += len(hits) > 1
        assert max(shapely.intersection(polys[h], truth).area for h in hits) / truth.area > 0.99
    assert split / len(crossing) < 0.01
    assert len(out) == len(boxes)


def test_a_worker_seeing_one_tile_counts_cut_buildings_once():
    m = np.zeros((2 * S, 2 * S), bool)
    m[220:300, 200:320] = True  # four tiles
    m[10:30, 240:270] = True  # two tiles, side by side
    m[400:402, 10:12] = True  # a 4 px speck: 1.4 m2
    m[100:120, 100:120] = True
    local = {t: building_count(a.astype(np.float32), *t, min_area_m2=5.0) for t, a in cut_tiles(m)}
    assert sum(local.values()) == 3
    assert local[(18, X0, Y0)] == 3 and local[(18, X0 + 1, Y0)] == 0  # in the tiles of their north-west pieces
    assert sum(local.values()) == sum(count_by_tile(run(m, OutlineOptions(simplify=0, min_area_m2=5.0))).values())


def test_a_runaway_blob_is_emitted_in_parts_of_at_most_max_tiles():
    m = np.zeros((6 * S, 6 * S), bool)
    m[5:-5, 5:-5] = True  # one "building" over 36 tiles
    st = Stitcher(OutlineOptions(simplify=0, min_area_m2=0, max_tiles=4))
    out, open_groups = [], []
    for (z, x, y), tile in cut_tiles(m.astype(np.float32)):
        out += st.add(tile_pieces(tile, z, x, y))
        open_groups.append(sum(len(v) for v in st._members.values()))
    out += st.finish()
    assert max(open_groups) <= 6 * 2 + 4  # pieces held: about two rows, never the blob
    assert all(b.tiles <= 5 for b in out) and any(not b.complete for b in out)
    assert sum(as_px(b).area for b in out) == pytest.approx(m.sum())
    with pytest.raises(OutlinesError):
        OutlineOptions(max_tiles=0)


def test_pieces_stored_as_json_by_a_worker_stitch_the_same():
    import json

    m = np.zeros((2 * S, 2 * S), bool)
    m[100:140, 200:250] = True
    m[100:140, 262:320] = True
    m[115:119, 250:262] = True  # the dumbbell over the edge (sdt: two buildings)
    m[220:300, 200:320] = True  # four tiles
    sdt = signed_distance_m(m, 0.6)
    opts = OutlineOptions(head="sdt", simplify=0, min_area_m2=0)
    direct = list(outline_tiles(cut_tiles(sdt), opts))
    stored = [json.dumps(tile_pieces(a, *t, head="sdt").to_dict()) for t, a in cut_tiles(sdt)]
    from looking_glass.outlines.vectorize import TilePieces

    again = list(outline_tiles((TilePieces.from_dict(json.loads(d)) for d in stored), opts))
    assert len(direct) == len(again) == 3
    assert all(a.polygon.equals(b.polygon) and a.tile == b.tile for a, b in zip(direct, again, strict=True))


def test_simplification_tolerance_in_metres_follows_latitude():
    from looking_glass.outlines.georef import m_per_px

    m = np.zeros((S, S), bool)
    yy, xx = np.mgrid[0:S, 0:S]
    m[(xx - 128) ** 2 + (yy - 128) ** 2 < 60**2] = True  # a round tank: many vertices to remove

    def shape(y0, **kw):
        (b,) = outline_tiles(cut_tiles(m.astype(np.float32), y0=y0), OutlineOptions(min_area_m2=0, **kw))
        return b.polygon

    for y0 in (Y0, 84_000):  # near the equator and at 54 N, where a pixel covers 0.35 m
        px = 0.8 / m_per_px((y0 + 0.5) * S, 18)
        assert shape(y0, simplify=0.8, simplify_unit="m").equals(shape(y0, simplify=px))
    assert len(shape(84_000, simplify=0.8, simplify_unit="m").exterior.coords) > 8
    with pytest.raises(OutlinesError):
        OutlineOptions(simplify_unit="ft")


def test_a_group_of_many_ragged_pieces_is_unioned_exactly():
    m = np.zeros((3 * S, 3 * S), bool)
    m[100:700, 100:700] = True
    m[300:330, 300:330] = False  # a courtyard away from every edge
    m[::16, :] = False  # stripes cut the blob into ragged pieces per tile, joined across edges
    m[:, 200] = True
    m[:, 500] = True
    (b,) = run(m, OutlineOptions(simplify=0, min_area_m2=0, max_tiles=9))
    assert as_px(b).area == pytest.approx(m.sum())
    assert len(b.polygon.interiors) > 1


def test_the_one_tile_count_by_hand_specks_and_edges():
    from looking_glass.outlines.vectorize import count_in_tile

    lab = np.zeros((S, S), np.int32)
    lab[0:10, 100:120] = 1  # on the north edge: counted in the tile to the north
    lab[100:120, 0:10] = 2  # on the west edge: counted in the tile to the west
    lab[250:256, 50:52] = 3  # a 12 px speck cut by the south edge: may be more below, counted
    lab[60:62, 60:62] = 4  # a 4 px speck inside (about 1.4 m2 here): dropped
    lab[150:190, 150:190] = 5  # a building inside: counted
    lab[0:4, 252:256] = 6  # the north-east corner: counted to the north
    assert count_in_tile(lab, 18, X0, Y0, min_area_m2=5.0) == 2
    assert count_in_tile(lab, 18, X0, Y0, min_area_m2=0.0) == 3
    assert count_in_tile(np.zeros((S, S), np.int32), 18, X0, Y0) == 0


def test_the_sdt_head_counts_two_touching_buildings_as_two():
    two = np.zeros((S, S), bool)
    two[60:120, 40:100] = True
    two[60:120, 104:164] = True
    two[85:95, 100:104] = True  # a 10 px neck: narrower than either building
    sdt = signed_distance_m(two.astype(np.uint8), 0.6, 10.0)
    assert building_count(sdt, 18, X0, Y0, "sdt") == 2
    assert building_count(two, 18, X0, Y0, "binary") == 1  # one connected region

"""Known answers from the synthetic world (its exact truth masks): outlines of a block of
adjacent tiles against the world's buildings, and the partially-mapped test of the mapping gap."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from scipy import ndimage

from looking_glass.datasets.labels import signed_distance_m
from looking_glass.datasets.synthetic import render_tile
from looking_glass.grid import ground_resolution_m, tile_center_lat
from looking_glass.outlines.evaluate import evaluate_polygons
from looking_glass.outlines.exports import write_geojson
from looking_glass.outlines.gap import gap_summary, mapping_gap
from looking_glass.outlines.georef import area_m2, to_lonlat
from looking_glass.outlines.stitch import OutlineOptions, count_by_tile, outline_tiles
from looking_glass.outlines.vectorize import trace_labels

Z, X0, Y0, COLS, ROWS = 18, 150_000, 130_000, 4, 4
S = 256
MIN_AREA = 5.0


@pytest.fixture(scope="module")
def world():
    """Truth masks of a 4x4 block and the world's buildings: the 4-connected regions of the
    mosaic of truth masks (every synthetic building is one region), as exact lon/lat polygons."""
    masks = {(x, y): render_tile(Z, x, y)[1] for y in range(Y0, Y0 + ROWS) for x in range(X0, X0 + COLS)}
    mosaic = np.block([[masks[(x, y)] for x in range(X0, X0 + COLS)] for y in range(Y0, Y0 + ROWS)])
    labels, _ = ndimage.label(mosaic)
    px = [g for g in trace_labels(labels, (X0 * S, Y0 * S)).values() if area_m2(g, Z) >= MIN_AREA]
    assert len(px) >= 30, "the block should hold a few dozen buildings"
    return masks, px, [to_lonlat(g, Z) for g in px]


def stream(masks, head):
    for (x, y), m in sorted(masks.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if head == "binary":
            yield (Z, x, y), m.astype(np.float32)
        else:
            yield (Z, x, y), signed_distance_m(m, ground_resolution_m(tile_center_lat(x, y, Z), Z))


def write_fc(path, geoms):
    feats = [{"type": "Feature", "properties": {}, "geometry": json.loads(shapely.to_geojson(g))} for g in geoms]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


@pytest.mark.parametrize("head, regularise", [("binary", False), ("binary", True), ("sdt", True)])
def test_outlines_of_truth_masks_are_the_worlds_buildings(tmp_path, world, head, regularise):
    masks, truth_px, truth_ll = world
    opts = OutlineOptions(head=head, regularise=regularise, min_area_m2=MIN_AREA)
    buildings = list(outline_tiles(stream(masks, head), opts))
    pred = tmp_path / "pred.geojson"
    write_geojson(buildings, pred)
    r = evaluate_polygons(pred, write_fc(tmp_path / "truth.geojson", truth_ll), iou=0.5)
    assert r["f1"] >= 0.97, r
    # building_count per tile: the tile of each building's centroid
    expected = {}
    for g in truth_px:
        c = g.centroid if g.contains(g.centroid) else g.representative_point()
        key = (Z, int(c.x // S), int(c.y // S))
        expected[key] = expected.get(key, 0) + 1
    counts = count_by_tile(buildings)
    agree = sum(counts.get(k, 0) == v for k, v in expected.items()) / len(expected)
    assert agree >= 0.9
    # area: simplification moves walls by less than a pixel
    total = sum(b.area_m2 for b in buildings)
    assert total == pytest.approx(sum(area_m2(g, Z) for g in truth_px), rel=0.05)


def test_partially_mapped_world_gap_matches_the_removed_share(world):
    masks, truth_px, truth_ll = world
    rng = np.random.default_rng(1015)
    removed = rng.random(len(truth_ll)) < 0.3  # "OpenStreetMap" misses about 30% of the buildings
    osm = [g for g, r in zip(truth_ll, removed, strict=True) if not r]
    predicted = list(outline_tiles(stream(masks, "binary"), OutlineOptions(min_area_m2=MIN_AREA)))
    tiles = [(Z, x, y) for (x, y) in masks]
    rows = mapping_gap(predicted, osm, tiles=tiles)
    assert len(rows) == len(tiles)
    # the known answer per tile: the share of the tile's truth building area still mapped
    errors = []
    for row in rows:
        box = shapely.box(row["x"] * S, row["y"] * S, (row["x"] + 1) * S, (row["y"] + 1) * S)
        area = np.array([g.intersection(box).area for g in truth_px])
        if area.sum() == 0:
            assert row["completeness"] == 1.0 or row["predicted_area_m2"] < MIN_AREA
            continue
        expected = area[~removed].sum() / area.sum()
        errors.append(abs(row["completeness"] - expected))
    assert np.median(errors) <= 0.10 and np.median(errors) < 0.03  # the goal, and what it does
    s = gap_summary(rows)
    truth_area = np.array([area_m2(g, Z) for g in truth_px])
    removed_share = truth_area[removed].sum() / truth_area.sum()
    assert s["unmapped_area_m2"] / s["predicted_area_m2"] == pytest.approx(removed_share, abs=0.02)
    assert s["mapped_count"] == len(osm) and s["predicted_count"] == pytest.approx(len(truth_px), abs=1)

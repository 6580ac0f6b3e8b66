"""The mapping gap per tile on hand-made predicted and mapped buildings, with references in
another CRS, empty, with invalid geometries, and from an OpenStreetMap extract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from outlines_helpers import X0, Y0

from looking_glass.grid import pixel_area_m2, quadkey
from looking_glass.outlines.errors import InvalidGeometryWarning, OutlinesError
from looking_glass.outlines.gap import GAP_FIELDS, completeness, gap_summary, gap_within, mapping_gap
from looking_glass.outlines.georef import to_lonlat
from looking_glass.outlines.layers import read_polygons, to_crs

S = 256
K = pixel_area_m2(X0, Y0)  # m2 per pixel in these tiles


def ll(c0, r0, c1, r1):
    """A lon/lat box from pixel columns/rows relative to tile X0/Y0's corner."""
    return to_lonlat(shapely.box(X0 * S + c0, Y0 * S + r0, X0 * S + c1, Y0 * S + r1), 18)


PRED = [ll(10, 10, 30, 30), ll(100, 100, 140, 120), ll(240, 50, 280, 60), ll(10, 300, 50, 340)]
#        400 px, mapped    800 px, half mapped   across x edge: 160+240  in tile (X0, Y0+1): unmapped
MAPPED = [ll(10, 10, 30, 30), ll(100, 100, 120, 120), ll(240, 50, 280, 60), ll(400, 400, 420, 410)]


def by_tile(rows):
    return {(r["x"] - X0, r["y"] - Y0): r for r in rows}


def test_per_tile_areas_counts_completeness_and_rank():
    rows = mapping_gap(PRED, MAPPED, tolerance_m=0)
    assert all(set(r) == set(GAP_FIELDS) for r in rows)
    t = by_tile(rows)
    assert set(t) == {(0, 0), (1, 0), (0, 1)}  # tiles the predictions touch
    a = t[(0, 0)]
    assert a["predicted_area_m2"] == pytest.approx((400 + 800 + 16 * 10) * K, rel=1e-6)
    assert a["mapped_area_m2"] == pytest.approx((400 + 400 + 160) * K, rel=1e-6)
    assert a["unmapped_area_m2"] == pytest.approx(400 * K, rel=1e-6)
    assert a["completeness"] == pytest.approx(960 / 1360)
    assert (a["predicted_count"], a["mapped_count"]) == (2, 2)  # the edge building counts east (centroid x 260)
    b = t[(1, 0)]
    assert b["predicted_count"] == 1 and b["completeness"] == pytest.approx(1.0) and b["unmapped_area_m2"] < 1e-6
    c = t[(0, 1)]
    assert c["completeness"] == 0.0 and c["unmapped_area_m2"] == pytest.approx(1600 * pixel_area_m2(X0, Y0 + 1), rel=1e-6)
    assert [r["rank"] for r in rows] == [1, 2, 3] and rows[0]["quadkey"] == quadkey(X0, Y0 + 1, 18)
    s = gap_summary(rows)
    assert s["predicted_count"] == 4 and s["unmapped_area_m2"] == pytest.approx(2000 * K, rel=1e-5)
    # the mapped building in the unrequested tile (X0+1, Y0+1) shows when that tile is asked for
    rows = mapping_gap(PRED, MAPPED, tiles=[(18, X0 + 1, Y0 + 1)], tolerance_m=0)
    assert rows[0]["mapped_count"] == 1 and rows[0]["completeness"] == 1.0  # nothing predicted: nothing to map
    with pytest.raises(OutlinesError, match="zoom"):
        mapping_gap(PRED, MAPPED, tiles=[(17, 1, 1)], tolerance_m=0)


def test_completeness_is_the_predicted_area_the_mapped_buildings_cover_in_tiles_tasks_and_totals():
    # Tile (X0, Y0): a 400 px predicted building, half of it (200 px) under a mapped one, and a
    # 1,000 px mapped building where nothing is predicted; tile (X0+1, Y0): a 1,600 px predicted
    # building, nothing mapped. Mapped area over predicted area would read 1,400/400 -> 100% for
    # the first tile and 1,400/2,000 = 70% in all, though 1,800 of 2,000 px are not mapped.
    pred = [ll(10, 10, 30, 30), ll(300, 100, 340, 140)]
    mapped = [ll(20, 10, 40, 30), ll(100, 100, 150, 120)]
    t = by_tile(mapping_gap(pred, mapped, tolerance_m=0))
    assert t[(0, 0)]["mapped_area_m2"] == pytest.approx(1400 * K, rel=1e-6)
    assert t[(0, 0)]["unmapped_area_m2"] == pytest.approx(200 * K, rel=1e-6)
    assert t[(0, 0)]["completeness"] == pytest.approx(200 / 400, rel=1e-6)
    assert t[(1, 0)]["completeness"] == 0.0
    assert gap_summary(list(t.values()))["completeness"] == pytest.approx(200 / 2000, rel=1e-6)
    # task rows: one task square that is the first tile, one over both tiles
    tasks = [{"name": "first", "geometry": ll(0, 0, 256, 256)}, {"name": "both", "geometry": ll(0, 0, 512, 256)},
             {"name": "empty", "geometry": ll(0, 200, 5, 205)}]
    rows = {r["name"]: r for r in gap_within(pred, mapped, tasks, tolerance_m=0)}
    assert rows["first"]["completeness"] == pytest.approx(200 / 400, rel=1e-4)
    assert rows["both"]["completeness"] == pytest.approx(200 / 2000, rel=1e-4)
    assert rows["empty"]["predicted_area_m2"] == 0 and rows["empty"]["completeness"] == 1.0
    assert completeness(0.0, 0.0) == 1.0 and completeness(100.0, 100.000001) == 0.0  # round-off stays in 0..1


def test_reference_in_another_crs_from_a_file(tmp_path):
    utm = to_crs(np.array([g.segmentize(1e-6) for g in MAPPED], dtype=object), "EPSG:4326", "EPSG:32735")
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32735"}},
           "features": [{"type": "Feature", "properties": {}, "geometry": json.loads(shapely.to_geojson(g))} for g in utm]}
    path = tmp_path / "mapped_utm.geojson"
    path.write_text(json.dumps(doc))
    layer = read_polygons(path)
    t = by_tile(mapping_gap(PRED, layer, tolerance_m=0))
    assert t[(0, 0)]["unmapped_area_m2"] == pytest.approx(400 * K, rel=1e-3)
    assert t[(0, 0)]["completeness"] == pytest.approx(960 / 1360, rel=1e-3)


def test_empty_reference_and_no_predictions():
    rows = mapping_gap(PRED, [])
    assert all(r["completeness"] == 0.0 and r["unmapped_area_m2"] == pytest.approx(r["predicted_area_m2"]) for r in rows)
    assert mapping_gap([], MAPPED) == []
    assert gap_summary([])["completeness"] == 1.0


def test_reference_with_invalid_geometries_warns_and_uses_the_rest(tmp_path):
    feats = [{"type": "Feature", "properties": {}, "geometry": json.loads(shapely.to_geojson(g))} for g in MAPPED]
    w, s, e, n = MAPPED[1].bounds
    feats.insert(1, {"type": "Feature", "id": 77, "properties": {},
                     "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, n], [e, s], [w, n], [w, s]]]}})
    path = tmp_path / "mapped.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    with pytest.warns(InvalidGeometryWarning, match=r"mapped.geojson: 1 feature\(s\) skipped.*feature 1 \(id 77\)"):
        layer = read_polygons(path)
    assert len(layer) == 4
    assert by_tile(mapping_gap(PRED, layer, tolerance_m=0))[(0, 0)]["unmapped_area_m2"] == pytest.approx(400 * K, rel=1e-6)


def test_reference_from_an_osm_extract(tmp_path):
    import osmium
    from osmium.osm.mutable import Node, Way

    path = tmp_path / "mapped.osm.pbf"
    writer = osmium.SimpleWriter(str(path))
    nid = 1
    for w, geom in enumerate(MAPPED, start=1):
        ids = []
        for lon, lat in np.asarray(geom.exterior.coords)[:-1]:
            writer.add_node(Node(id=nid, location=(lon, lat)))
            ids.append(nid)
            nid += 1
        writer.add_way(Way(id=w, nodes=ids + ids[:1], tags={"building": "yes"}))
    writer.close()
    t = by_tile(mapping_gap(PRED, read_polygons(path), tolerance_m=0))
    # OSM stores 1e-7 degree fixed point: areas agree to a few parts in ten thousand
    assert t[(0, 0)]["unmapped_area_m2"] == pytest.approx(400 * K, rel=2e-3)
    assert t[(0, 1)]["completeness"] == 0.0


def test_files_csv_and_the_map_layer(tmp_path):
    from looking_glass.outlines.exports import write_geojson
    from looking_glass.outlines.gap import (
        compare_files,
        gap_feature_collection,
        write_gap_csv,
    )

    pred, mapped = tmp_path / "pred.geojson", tmp_path / "mapped.geojson"
    write_geojson(PRED, pred)
    write_geojson(MAPPED, mapped)
    rows = compare_files(pred, mapped, tolerance_m=0)
    assert by_tile(rows)[(0, 0)]["unmapped_area_m2"] == pytest.approx(400 * K, rel=2e-3)  # 1e-7 degree coordinates
    fc = gap_feature_collection(rows)
    assert len(fc["features"]) == 3 and fc["features"][0]["properties"]["rank"] == 1
    assert shapely.geometry.shape(fc["features"][0]["geometry"]).exterior.is_ccw
    assert write_gap_csv(rows, tmp_path / "gap.csv") == 3
    lines = (tmp_path / "gap.csv").read_text().splitlines()
    assert lines[0].split(",") == list(GAP_FIELDS) and len(lines) == 4
    assert compare_files(pred, mapped, tiles=[(18, X0 + 1, Y0 + 1)], tolerance_m=0)[0]["mapped_count"] == 1


def test_slivers_between_two_tracings_of_one_building_are_not_a_gap():
    shifted = [ll(11, 10, 31, 30)]  # the first building mapped one pixel (0.6 m) east
    exact = by_tile(mapping_gap(PRED[:1], shifted, tolerance_m=0))[(0, 0)]
    assert exact["unmapped_area_m2"] == pytest.approx(20 * K, rel=1e-6)  # a 1 x 20 px sliver
    assert by_tile(mapping_gap(PRED[:1], shifted))[(0, 0)]["unmapped_area_m2"] < 1e-6  # within 1 m
    with pytest.raises(OutlinesError):
        mapping_gap(PRED, MAPPED, tolerance_m=-1)


@pytest.mark.parametrize("kind", ["geojson", "gpkg"])
def test_a_reference_without_a_polygon_has_nothing_to_compare_against(tmp_path, kind):
    from looking_glass.outlines.reference import MappedReference

    centre = MAPPED[0].centroid
    if kind == "geojson":
        path = tmp_path / "points.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [centre.x, centre.y]}},
            {"type": "Feature", "properties": {}, "geometry": json.loads(shapely.to_geojson(centre.buffer(1e-5).exterior))}]}))
        reason = "feature 1: a LineString, not a polygon"
    else:
        import pyogrio.raw

        path = tmp_path / "points.gpkg"
        pyogrio.raw.write(path, np.array([shapely.to_wkb(centre)], dtype=object), [], [], geometry_type="Point",
                          crs="EPSG:4326")
        reason = "all 1 features: the layer holds Points, not polygons"
    with pytest.raises(OutlinesError, match="no usable building polygon in it, nothing to compare against") as e:
        MappedReference(path, bounds=lambda: tuple(MAPPED[0].bounds))
    assert reason in str(e.value)
    # an empty file is still fine: everything is unmapped
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert len(MappedReference(empty, bounds=lambda: tuple(MAPPED[0].bounds)).read(MAPPED[0].bounds)) == 0

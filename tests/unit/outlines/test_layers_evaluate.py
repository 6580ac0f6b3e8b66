"""Reading polygon layers (GeoJSON in any declared CRS, GDAL formats, OSM extracts) and the
object-level evaluation's SpaceNet matching rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from looking_glass.outlines.errors import InvalidGeometryWarning, OutlinesError
from looking_glass.outlines.evaluate import evaluate_polygons, match_spacenet, scores
from looking_glass.outlines.layers import read_polygons, to_crs

UTM = "EPSG:32736"  # UTM 36S, where the demo's sample AOI is (30.06 E, 1.95 S)
E0, N0 = 785_000.0, 9_784_000.0  # a point of that zone near the AOI


def utm_boxes(offsets):
    return [shapely.box(E0 + dx, N0 + dy, E0 + dx + w, N0 + dy + h) for dx, dy, w, h in offsets]


def feature_collection(geoms, crs_name=None, ids=None):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": (ids[i] if ids else i), "properties": {},
         "geometry": json.loads(shapely.to_geojson(g))} for i, g in enumerate(geoms)]}
    if crs_name:
        doc["crs"] = {"type": "name", "properties": {"name": crs_name}}
    return doc


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


# ---- the matching rule, by hand ----------------------------------------------------------------------
T1, T2 = shapely.box(0, 0, 10, 10), shapely.box(9, 0, 19, 10)
P1 = shapely.box(0.5, 0, 10.5, 10)  # IoU with T1 95/105 = 0.905, with T2 15/185 = 0.081
P2 = shapely.box(4, 0, 14, 10)  # IoU with T1 60/140 = 0.429, with T2 50/150 = 0.333


def test_each_prediction_takes_the_best_unmatched_truth_in_order():
    r = match_spacenet([P1, P2], [T1, T2], iou=0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1) and r["matches"] == [(0, 0, pytest.approx(95 / 105))]
    # at 0.3, P2 finds T1 taken and matches T2 (0.333) although its IoU with T1 (0.429) is higher
    r = match_spacenet([P1, P2], [T1, T2], iou=0.3)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 0, 0)
    assert r["matches"][1] == (1, 1, pytest.approx(1 / 3))
    # in the other order P2 takes T1 and P1 is left with T2 (0.081): file order matters
    r = match_spacenet([P2, P1], [T1, T2], iou=0.3)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1) and r["matches"] == [(0, 0, pytest.approx(60 / 140))]
    assert r["precision"] == 0.5 and r["recall"] == 0.5 and r["f1"] == 0.5


def test_threshold_is_inclusive_and_empty_cases():
    half = shapely.box(0, 0, 10, 20)  # IoU with T1 exactly 0.5
    assert match_spacenet([T1], [half], iou=0.5)["tp"] == 1
    assert scores(0, 0, 0) == {"tp": 0, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    r = match_spacenet([], [T1, T2])
    assert (r["tp"], r["fn"], r["recall"], r["f1"]) == (0, 2, 0.0, 0.0)
    r = match_spacenet([T1], [])
    assert (r["fp"], r["precision"], r["recall"]) == (1, 0.0, 0.0)
    with pytest.raises(OutlinesError):
        match_spacenet([T1], [T1], iou=0)


# ---- files in any CRS ----------------------------------------------------------------------------
def test_evaluate_files_in_different_crs_including_the_legacy_member(tmp_path):
    truth_utm = utm_boxes([(0, 0, 12, 9), (30, 0, 10, 10), (0, 40, 20, 8)])
    truth_ll = to_crs(np.array([g.segmentize(1.0) for g in truth_utm]), UTM, "EPSG:4326")
    truth = write(tmp_path, "truth.geojson", feature_collection(truth_ll))  # RFC 7946 lon/lat
    # predictions in UTM, declared with the legacy crs member: two good, one shifted 6 m, one extra
    pred_utm = utm_boxes([(0.3, 0, 12, 9), (30, 0.2, 10, 10), (6, 40, 20, 8), (100, 100, 5, 5)])
    pred = write(tmp_path, "pred.geojson", feature_collection(pred_utm, "urn:ogc:def:crs:EPSG::32736"))
    r = evaluate_polygons(pred, truth)
    assert (r["tp"], r["fp"], r["fn"]) == (3, 1, 0)  # 6 m of 20: IoU 14/26 = 0.54
    r = evaluate_polygons(pred, truth, iou=0.6)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 1) and r["precision"] == 0.5 and r["recall"] == pytest.approx(2 / 3)
    json.dumps(r)  # printable as JSON
    # the same predictions in a GeoPackage in web mercator
    import pyogrio.raw

    gpkg = tmp_path / "pred.gpkg"
    merc = to_crs(np.array(pred_utm, dtype=object), UTM, "EPSG:3857")
    pyogrio.raw.write(str(gpkg), shapely.to_wkb(merc), [], fields=[], driver="GPKG", crs="EPSG:3857",
                      geometry_type="Polygon")
    assert evaluate_polygons(gpkg, truth)["tp"] == 3


def test_invalid_truth_geometries_are_named_and_the_rest_used(tmp_path):
    good = to_crs(np.array(utm_boxes([(0, 0, 10, 10), (30, 0, 10, 10)])), UTM, "EPSG:4326")
    doc = feature_collection(list(good))
    w, s, e, n = good[0].bounds
    doc["features"].append({"type": "Feature", "id": "bow", "properties": {},  # a bow tie: self-intersecting
                            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, n], [e, s], [w, n], [w, s]]]}})
    doc["features"].append({"type": "Feature", "properties": {"id": "b4"},
                            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e]]]}})
    doc["features"].append({"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [w, s]}})
    truth = write(tmp_path, "truth.geojson", doc)
    pred = write(tmp_path, "pred.geojson", feature_collection(list(good)))
    # One line, counts by kind: the Point was skipped without a word before (feature_tally's rule).
    with pytest.warns(InvalidGeometryWarning, match=r"3 feature\(s\) skipped \(1 invalid Polygon, 1 unreadable geometry, "
                                                    r"1 Point\), the rest used \(2\): feature 2 \(id 'bow'\): invalid "
                                                    r"Polygon \(Self-intersection.*feature 3 \(id 'b4'\).*feature 4: a Point"):
        r = evaluate_polygons(pred, truth)
    assert (r["tp"], r["fp"], r["fn"], r["truth"]) == (2, 0, 0, 2)
    assert len(r["skipped"]) == 3 and "truth.geojson: feature 2 (id 'bow')" in r["skipped"][0]
    assert r["skipped"][2].endswith("truth.geojson: feature 4: a Point, not a polygon")
    layer = read_polygons(truth, warn=False)
    assert len(layer) == 2 and layer.ignored == 1


def test_empty_and_unreadable_files(tmp_path):
    empty = write(tmp_path, "empty.geojson", {"type": "FeatureCollection", "features": []})
    pred = write(tmp_path, "pred.geojson", feature_collection(utm_boxes([(0, 0, 10, 10)]), "EPSG:32736"))
    r = evaluate_polygons(pred, empty)
    assert (r["tp"], r["fp"], r["fn"], r["precision"]) == (0, 1, 0, 0.0)
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(OutlinesError, match="bad.geojson: not GeoJSON"):
        read_polygons(tmp_path / "bad.geojson")
    with pytest.raises(OutlinesError, match="no such file"):
        read_polygons(tmp_path / "missing.geojson")
    odd = write(tmp_path, "odd.geojson", {**feature_collection([]), "crs": {"type": "link", "properties": {}}})
    with pytest.raises(OutlinesError, match="crs member"):
        read_polygons(odd)
    (tmp_path / "junk.gpkg").write_bytes(b"not a database")
    with pytest.raises(OutlinesError, match="junk.gpkg"):
        read_polygons(tmp_path / "junk.gpkg")
    with pytest.raises(OutlinesError):
        evaluate_polygons(pred, empty, iou=1.5)


def sq(x, y, d):
    """A closed square ring of side ``d`` degrees from (x, y)."""
    return [(x, y), (x + d, y), (x + d, y + d), (x, y + d), (x, y)]


def test_osm_pbf_extract_made_in_the_test(tmp_path):
    import osmium
    from osmium.osm.mutable import Node, Relation, Way

    path = tmp_path / "tiny.osm.pbf"
    writer = osmium.SimpleWriter(str(path))
    rings = {1: sq(30.0, -2.0, 1e-4), 2: sq(30.001, -2.0, 1e-4), 3: sq(30.002, -2.0, 1e-4),
             4: sq(30.003, -2.0, 2e-4), 5: sq(30.00305, -1.99995, 1e-4)}
    nid = 1
    refs = {}
    for w, ring in rings.items():
        refs[w] = []
        for lon, lat in ring[:-1]:
            writer.add_node(Node(id=nid, location=(lon, lat)))
            refs[w].append(nid)
            nid += 1
    writer.add_node(Node(id=nid, location=(30.01, -2.0), tags={"building": "yes"}))  # a point: ignored
    tags = {1: {"building": "yes"}, 2: {"building": "no"}, 3: {"highway": "service", "area": "yes"}, 4: {}, 5: {}}
    for w in rings:
        writer.add_way(Way(id=w, nodes=refs[w] + refs[w][:1], tags=tags[w]))
    writer.add_relation(Relation(id=1, members=[("w", 4, "outer"), ("w", 5, "inner")],
                                 tags={"type": "multipolygon", "building": "school"}))
    writer.close()
    layer = read_polygons(path)
    assert layer.crs.to_epsg() == 4326 and sorted(layer.names) == ["relation 1", "way 1"]
    by_name = dict(zip(layer.names, layer.geoms, strict=True))
    assert len(by_name["relation 1"].interiors) == 1
    assert by_name["relation 1"].area == pytest.approx(4e-8 - 1e-8)
    assert len(read_polygons(path, bbox=(29.9, -2.1, 30.0015, -1.9))) == 1

    # As results --within polygons, the OSM areas (no feature position recorded) are numbered in order.
    from looking_glass.results.polygons import read_within_polygons

    polygons, notes = read_within_polygons(str(path))
    assert sorted(p["name"] for p in polygons) == ["polygon 1", "polygon 2"] and notes == []

import json

import pytest

from looking_glass.tiling.aoi import AoiError, parse_aoi

SQUARE = [[[30.0, -2.0], [30.01, -2.0], [30.01, -1.99], [30.0, -1.99], [30.0, -2.0]]]


def dump(doc) -> bytes:
    return json.dumps(doc).encode()


def test_polygon_feature_and_collection_forms_parse_to_the_same_area():
    poly = {"type": "Polygon", "coordinates": SQUARE}
    forms = [
        poly,
        {"type": "Feature", "properties": {}, "geometry": poly},
        {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": poly}]},
        {"type": "GeometryCollection", "geometries": [poly]},
        {"type": "MultiPolygon", "coordinates": [SQUARE]},
    ]
    areas = {round(parse_aoi(dump(f)).geometry.area, 12) for f in forms}
    assert areas == {round(0.01 * 0.01, 12)}


def test_name_comes_from_the_document_or_the_default():
    doc = {"type": "FeatureCollection", "name": "district-7", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": SQUARE}}]}
    assert parse_aoi(dump(doc)).name == "district-7"
    assert parse_aoi(dump({"type": "Polygon", "coordinates": SQUARE}), default_name="x").name == "x"


def test_non_polygonal_features_are_ignored_with_a_warning():
    doc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [30, -2]}},
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": SQUARE}},
        ],
    }
    aoi = parse_aoi(dump(doc))
    assert aoi.geometry.area > 0
    assert any("Point" in w and "ignored" in w for w in aoi.warnings)


def test_polygon_with_hole_keeps_the_hole():
    hole = [[30.004, -1.996], [30.006, -1.996], [30.006, -1.994], [30.004, -1.994], [30.004, -1.996]]
    aoi = parse_aoi(dump({"type": "Polygon", "coordinates": [SQUARE[0], hole]}))
    assert aoi.geometry.area == pytest.approx(0.01**2 - 0.002**2)


def test_latitudes_beyond_web_mercator_are_clipped_with_a_warning():
    ring = [[0, 80], [1, 80], [1, 89], [0, 89], [0, 80]]
    aoi = parse_aoi(dump({"type": "Polygon", "coordinates": [ring]}))
    assert aoi.geometry.bounds[3] == pytest.approx(85.0511287798066)
    assert any("clipped" in w for w in aoi.warnings)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "not a GeoJSON object"),
        (dump({"type": "Banana"}), "unknown GeoJSON type 'Banana'"),
        (dump({"type": "Point", "coordinates": [30, -2]}), "no polygonal geometry"),
        (dump({"type": "FeatureCollection", "features": []}), "no polygonal geometry"),
        (dump({"type": "Polygon", "coordinates": [[[200, 0], [201, 0], [201, 1], [200, 0]]]}), "longitude 200 is out of range"),
        (dump({"type": "Polygon", "coordinates": [[[0, 95], [1, 95], [1, 96], [0, 95]]]}), "latitude 95 is out of range"),
        (dump({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]}), "zero area"),
        (dump({"type": "Polygon", "coordinates": []}), "no polygonal geometry"),
        (dump({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}), "at least 4 positions"),
        (dump({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}), "not closed"),
        (dump({"type": "Polygon", "coordinates": [[[0, 0], ["a", 0], [1, 1], [0, 0]]]}), "non-numeric"),
        (dump({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}), "not a valid polygon: Self-intersection"),
        (dump({"type": "Polygon", "coordinates": [[[0, 89], [1, 89], [1, 90], [0, 90], [0, 89]]]}), "zero area inside the web-mercator"),
        (dump({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": "x"}}), "must be a non-empty list"),
    ],
)
def test_bad_aoi_gets_a_specific_reason(data, reason):
    with pytest.raises(AoiError, match=None) as err:
        parse_aoi(data)
    assert reason in str(err.value)

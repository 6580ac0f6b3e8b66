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
        (dump({"type": "FeatureCollection", "features": []}), "AOI has no features: the FeatureCollection's features"),
        (dump({"type": "GeometryCollection", "geometries": []}), "AOI has no features: the GeometryCollection's"),
        (dump({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None}]}),
         "no polygonal geometry (Polygon or MultiPolygon): $.features[0] has no geometry"),
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


# ---- reading large AOIs fast (issue 14): the same answers as the plain way --------------------------
def _squares(*corners, side=1.0):
    return [[[[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]] for x, y in corners]


@pytest.mark.parametrize(
    "rings",
    [
        _squares((0, 0), (0.5, 0.5), (10, 10)),  # two overlap, one stands apart
        _squares((0, 0), (1, 0), (5, 5)),  # two share a whole edge (a coverage)
        [*_squares((0, 0), side=2), [[[2, 0], [3, 0], [3, 1], [2, 1], [2, 0]]]],  # an edge met half-way
        _squares((0, 0), (1, 1)),  # touch at one point
        _squares((0, 0), (0, 0)),  # the same part twice
        [[[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[1, 1], [1, 2], [2, 2], [2, 1], [1, 1]]], _squares((1, 1))[0]],  # a hole filled
        _squares((0, 0), (3, 0), (6, 0)),  # all apart
    ],
)
def test_parts_are_merged_into_exactly_the_union(rings):
    import shapely
    from shapely.geometry import Polygon

    aoi = parse_aoi(dump({"type": "MultiPolygon", "coordinates": rings}))
    expected = shapely.union_all([Polygon(r[0], r[1:]) for r in rings])
    assert aoi.geometry.is_valid and aoi.geometry.area == pytest.approx(expected.area)
    assert aoi.geometry.symmetric_difference(expected).area == pytest.approx(0, abs=1e-12)


def test_a_city_boundary_reads_as_its_union_without_a_false_clip_warning():
    # New York City: 106 polygons, 75,500 vertices, boroughs sharing edges; far from +-85 degrees.
    import shapely
    from conftest import REPO_ROOT
    from shapely.geometry import Polygon

    doc = json.loads((REPO_ROOT / "benchmarks" / "data" / "new_york_city.geojson").read_bytes())
    aoi = parse_aoi(dump(doc))
    assert aoi.warnings == []
    polygons = [Polygon(p[0], p[1:]) for f in doc["features"] for p in
                (f["geometry"]["coordinates"] if f["geometry"]["type"] == "MultiPolygon" else [f["geometry"]["coordinates"]])]
    expected = shapely.union_all(polygons)
    assert aoi.geometry.is_valid and aoi.geometry.symmetric_difference(expected).area == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize(
    "position, reason",
    [
        ([30.005, True], "non-numeric"),
        (["30.005", -1.995], "non-numeric"),
        ([30.005, 10**400], "too large"),
        ([30.005, float("nan")], "non-finite"),
        ([400, -1.995], "longitude 400 is out of range"),
        ([30.005, -91], "latitude -91 is out of range"),
        ([30.005], "must be a position"),
    ],
)
def test_a_bad_position_among_many_good_ones_is_named(position, reason):
    ring = [[30 + i * 1e-5, -2.0] for i in range(500)] + [[30.005, -1.99], position, [30.0, -1.99], [30.0, -2.0]]
    with pytest.raises(AoiError, match=reason) as err:
        parse_aoi(dump({"type": "Polygon", "coordinates": [ring]}))
    assert "coordinates[0][501]" in str(err.value)


def test_positions_with_altitude_or_integers_read_like_plain_ones():
    plain = parse_aoi(dump({"type": "Polygon", "coordinates": [[[30, -2], [31, -2], [31, -1], [30, -1], [30, -2]]]}))
    with_z = parse_aoi(dump({"type": "Polygon", "coordinates": [[[30.0, -2.0, 5], [31.0, -2.0, 5], [31.0, -1.0, 5], [30.0, -1.0, 5], [30.0, -2.0, 5]]]}))
    mixed = parse_aoi(dump({"type": "Polygon", "coordinates": [[[30, -2], [31.0, -2, 1], [31, -1], [30, -1.0], [30, -2]]]}))
    assert plain.geometry.equals(with_z.geometry) and plain.geometry.equals(mixed.geometry)
    assert plain.geometry.area == 1.0


@pytest.mark.parametrize("crs, says", [
    ({"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}}, "the file declares crs 'urn:ogc:def:crs:EPSG::32616'"),
    (None, "are these metres of a projected CRS?"),
])
def test_an_aoi_in_projected_metres_says_it_must_be_lon_lat_and_how_to_convert(crs, says):
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[733700, 3724700], [733800, 3724700], [733800, 3724800], [733700, 3724700]]]}}]}
    if crs:
        doc["crs"] = crs
    with pytest.raises(AoiError) as err:
        parse_aoi(json.dumps(doc).encode())
    message = str(err.value)
    assert "longitude 733700 is out of range" in message and says in message
    assert "must be longitude/latitude degrees" in message and "ogr2ogr -t_srs EPSG:4326" in message


def test_other_aoi_errors_get_no_projection_hint():
    with pytest.raises(AoiError) as err:
        parse_aoi(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}).encode())
    assert "longitude/latitude degrees" not in str(err.value)


def square(lon, lat, d=0.01):
    return {"type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]]}


@pytest.mark.parametrize("doc, error", [
    (square(39.9, 116.4), "latitude 116.4 is out of range [-90, 90]"),  # Beijing as [lat, lon]
    (square(22.5, 88.3), "AOI has zero area inside the web-mercator latitude range"),  # Kolkata: lat 88.3, valid but polar
    ({"type": "Feature", "geometry": square(-33.9, -151.2)}, "latitude -151.2 is out of range"),  # Sydney, in a Feature
])
def test_swapped_coordinates_get_the_swapped_hint_not_the_projected_crs_one(doc, error):
    """Issue 18: [latitude, longitude] pairs said "are these metres of a projected CRS?" (or
    nothing): when every position would be valid swapped, the hint says so."""
    with pytest.raises(AoiError) as err:
        parse_aoi(json.dumps(doc).encode())
    message = str(err.value)
    lon, lat = (doc.get("geometry") or doc)["coordinates"][0][0]
    assert error in message and "projected CRS" not in message and "\n" not in message
    assert (f"are longitude and latitude swapped? GeoJSON wants [longitude, latitude]: the first position "
            f"[{lon:g}, {lat:g}] would be valid as [{lat:g}, {lon:g}]") in message


@pytest.mark.parametrize("magic", [b"II*\x00", b"MM\x00*", b"II+\x00"])
def test_a_tiff_given_as_the_aoi_says_so_and_how_to_make_one(tmp_path, capsys, magic):
    """Issue 18: `validate IMAGE.tif` said "AOI is not UTF-8 text (byte 5...)"."""
    from conftest import run_cli

    image = tmp_path / "scene.tif"
    image.write_bytes(magic + b"\x08\x00\x00\x00\xfe\x00\x04\x00" + bytes(64))
    code, out, err = run_cli(capsys, "validate", str(image))
    assert code == 2 and out == ""
    assert err.strip() == (f"error: {image}: AOI is a TIFF image, not GeoJSON: `looking-glass aoi IMAGE.tif > aoi.geojson` "
                           "writes its footprint as an AOI (or give `submit --imagery NAME` without an AOI)")

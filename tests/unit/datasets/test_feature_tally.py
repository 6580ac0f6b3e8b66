"""The one rule of every reader of building polygons (``datasets.feature_tally``): features that
are no polygon are skipped and counted by kind in one line, and a file with features but no usable
polygon is refused. Both readers (prepare's ``load_footprints`` and ``outlines.layers.read_polygons``)
are held to it on the same files."""

from __future__ import annotations

import json
import warnings

import pytest

from looking_glass.datasets.errors import PrepareError
from looking_glass.datasets.feature_tally import FeatureTally, geometry_kind
from looking_glass.datasets.labels import load_footprints
from looking_glass.outlines.errors import InvalidGeometryWarning, OutlinesError
from looking_glass.outlines.layers import read_polygons

SQUARE = [[[30.06, -1.95], [30.0601, -1.95], [30.0601, -1.9499], [30.06, -1.9499], [30.06, -1.95]]]
BOWTIE = [[[30.06, -1.95], [30.0601, -1.9499], [30.0601, -1.95], [30.06, -1.9499], [30.06, -1.95]]]
POINT = {"type": "Point", "coordinates": [30.06, -1.95]}
LINE = {"type": "LineString", "coordinates": [[30.06, -1.95], [30.0601, -1.95]]}


def _file(tmp_path, geometries, name="fp.geojson"):
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": g} for g in geometries]}))
    return path


def test_the_line_counts_by_kind_and_names_the_first_features():
    tally = FeatureTally("fp.geojson")
    tally.used = 4
    for i in range(3):
        tally.skip(f"feature {i}", "Point")
    tally.skip("feature 3", "no geometry")
    tally.skip("feature 3", "Point")  # met again (another extent): counted once
    tally.skip("feature 9", "invalid Polygon", "invalid Polygon (Self-intersection[1 2])")
    line = tally.line()
    assert "\n" not in line
    assert line.startswith("fp.geojson: 5 feature(s) skipped (3 Points, 1 without geometry, 1 invalid Polygon), "
                           "the rest used (4): feature 0: a Point, not a polygon; ")
    assert line.endswith("; feature 9: invalid Polygon (Self-intersection[1 2])")
    assert tally.counts() == {"Point": 3, "no geometry": 1, "invalid Polygon": 1}
    assert not tally.nothing_usable()


def test_more_than_five_features_are_cut_with_a_count():
    tally = FeatureTally("f")
    for i in range(8):
        tally.skip(f"feature {i}", "LineString")
    assert tally.line().endswith("feature 4: a LineString, not a polygon; and 3 more")
    assert tally.nothing_usable()  # used 0
    message = tally.refusal("nothing to score against")
    assert message.startswith("f: no usable building polygon in it, nothing to score against (8 feature(s), none a "
                              "valid Polygon or MultiPolygon: 8 LineStrings: feature 0: a LineString, not a polygon")


def test_nothing_to_say_and_nothing_to_refuse_when_every_feature_is_a_polygon():
    tally = FeatureTally("f")
    tally.used = 3
    assert tally.line() is None and not tally.nothing_usable()
    empty = FeatureTally("f")  # a file with no feature at all: each command says what it means
    assert not empty.nothing_usable()


def test_geometry_kinds():
    import shapely

    assert geometry_kind(None) == "no geometry"
    assert geometry_kind(shapely.Point(1, 2)) == "Point"
    assert geometry_kind(shapely.Polygon()) == "empty Polygon"
    assert geometry_kind({"type": "MultiLineString"}) == "MultiLineString"


def test_both_readers_skip_and_count_the_same_kinds(tmp_path):
    path = _file(tmp_path, [{"type": "Polygon", "coordinates": SQUARE}, POINT, LINE, None,
                            {"type": "Polygon", "coordinates": []}, {"type": "Polygon", "coordinates": BOWTIE}])
    labels = load_footprints(path, "fp.geojson")
    assert len(labels.geoms) == 2  # the bow tie repaired: prepare rasterises it
    (line,) = labels.warnings
    assert line.startswith("fp.geojson: 4 feature(s) skipped (1 Point, 1 LineString, 1 without geometry, "
                           "1 empty Polygon), the rest used (2): feature 1: a Point, not a polygon")
    assert "; 1 invalid polygon(s) repaired (shapely.make_valid) and used: feature 5: invalid Polygon (Self-intersection" in line
    with pytest.warns(InvalidGeometryWarning) as seen:
        layer = read_polygons(path)
    assert len(layer) == 1  # the bow tie skipped: object matching would count it as two buildings
    (message,) = [str(w.message) for w in seen]
    assert message.startswith(f"{path}: 5 feature(s) skipped (1 Point, 1 LineString, 1 without geometry, 1 empty "
                              "Polygon, 1 invalid Polygon), the rest used (1): feature 1: a Point, not a polygon")
    assert layer.tally.counts() == {**labels.tally.counts(), "invalid Polygon": 1}


@pytest.mark.parametrize("geometries, kinds", [
    ([POINT], "1 Point"),
    ([LINE, LINE], "2 LineStrings"),
    ([None, None], "2 without geometry"),  # was an empty label file for prepare (negative chips)
    ([{"type": "Polygon", "coordinates": []}], "1 empty Polygon"),
    ([{"type": "GeometryCollection", "geometries": [POINT]}], "1 GeometryCollection"),
])
def test_a_file_with_features_but_no_usable_polygon_is_refused_by_both_readers(tmp_path, geometries, kinds):
    path = _file(tmp_path, geometries)
    with pytest.raises(PrepareError) as e:
        load_footprints(path, str(path))
    message = str(e.value)
    assert message.startswith(f"{path}: no usable building polygon in it, nothing to label the chips with (")
    assert f"none a valid Polygon or MultiPolygon: {kinds}: feature 0: " in message and "\n" not in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InvalidGeometryWarning)
        layer = read_polygons(path)
    with pytest.raises(OutlinesError, match=f"no usable building polygon in it, nothing to score against .*{kinds}"):
        layer.require_usable("nothing to score against")


def test_a_file_without_features_is_not_refused(tmp_path):
    path = _file(tmp_path, [])
    assert load_footprints(path, "fp").empty
    assert len(read_polygons(path).require_usable("nothing to score against")) == 0


def test_compare_files_refuses_a_mapped_file_without_a_polygon(tmp_path):
    from looking_glass.outlines.gap import compare_files

    predicted = _file(tmp_path, [{"type": "Polygon", "coordinates": SQUARE}], "pred.geojson")
    mapped = _file(tmp_path, [POINT], "mapped.geojson")
    with pytest.raises(OutlinesError, match="mapped.geojson: no usable building polygon in it, nothing to compare against"):
        compare_files(predicted, mapped)

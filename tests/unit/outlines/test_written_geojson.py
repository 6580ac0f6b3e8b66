"""looking_glass.outlines.exports.read_written_geojson: a GeoJSONWriter file read back one feature
at a time, with its properties; a file it did not write is one clear error."""

from __future__ import annotations

import pytest
import shapely

from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.exports import GeoJSONWriter, read_written_geojson, write_geojson


def test_features_come_back_with_their_properties(tmp_path):
    path = tmp_path / "b.geojson"
    squares = [shapely.box(30.0 + i / 1000, -1.95, 30.0005 + i / 1000, -1.9495) for i in range(3)]
    with GeoJSONWriter(path) as out:
        for sq in squares:
            out.write(sq)
    back = list(read_written_geojson(path))
    assert len(back) == 3 and all(f.properties() == {} for f in back)
    assert all(shapely.equals_exact(f.polygon, sq, tolerance=1e-7) for f, sq in zip(back, squares, strict=True))
    again = tmp_path / "again.geojson"
    assert write_geojson(back, again) == 3 and again.read_text() == path.read_text()  # the writers take them


def test_an_empty_file_has_no_features(tmp_path):
    path = tmp_path / "none.geojson"
    GeoJSONWriter(path).close()
    assert list(read_written_geojson(path)) == []


def test_a_file_not_written_by_the_writer_is_an_error(tmp_path):
    path = tmp_path / "pretty.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [\n  {\n    "type": "Feature"\n  }\n]}\n')
    with pytest.raises(OutlinesError, match=r"pretty.geojson: line 2 is not a feature GeoJSONWriter wrote"):
        list(read_written_geojson(path))

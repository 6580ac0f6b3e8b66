"""``looking-glass export``: bad arguments end with one error line and exit status 2 before any
AWS call (the export itself: tests/integration/test_export_buildings.py, tests/e2e/test_outlines_e2e.py)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli


@pytest.mark.parametrize(("argv", "message"), [
    (["--out", __file__ + "/b.geojson"], "test_export_cli.py is a file, not a folder"),
    (["--out", "{tmp}/b.txt"], "cannot tell the format from the name"),
    (["--out", "{tmp}/b.geojson", "--format", "gpkg"], "names a geojson file but --format is gpkg"),
    (["--out", "{tmp}"], "is a folder"),
])
def test_bad_outputs_are_refused_before_anything_is_read(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, out, err = run_cli(capsys, "export", "somejob", "--embedded", str(tmp_path / "no-state.json"), *argv)
    assert code == 2 and message.format(tmp=tmp_path) in err and out == ""
    assert list(tmp_path.iterdir()) == []


def test_a_missing_unmapped_reference_is_refused_before_anything_is_read(tmp_path, capsys):
    code, out, err = run_cli(capsys, "export", "somejob", "--out", str(tmp_path / "todo.osm"),
                             "--unmapped", str(tmp_path / "osm.pbf"), "--embedded", str(tmp_path / "no-state.json"))
    assert code == 2 and out == "" and f"--unmapped {tmp_path / 'osm.pbf'}: no such file" in err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_format_is_an_argument_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", "somejob", "--out", str(tmp_path / "b.shp"), "--format", "shp")
    assert code == 2 and "invalid choice: 'shp'" in err


@pytest.mark.parametrize("command", [["results", "somejob"], ["map", "somejob", "--out", "{tmp}/map"]])
def test_a_missing_mapped_file_is_refused_before_anything_is_read(tmp_path, capsys, command):
    argv = [a.format(tmp=tmp_path) for a in command]
    code, out, err = run_cli(capsys, *argv, "--compare", str(tmp_path / "osm.pbf"),
                             "--embedded", str(tmp_path / "no-state.json"))
    assert code == 2 and f"--compare {tmp_path / 'osm.pbf'}: no such file" in err
    assert list(tmp_path.iterdir()) == []


def test_compare_takes_no_totals_option(tmp_path, capsys):
    mapped = tmp_path / "mapped.geojson"
    mapped.write_text('{"type": "FeatureCollection", "features": []}')
    code, _, err = run_cli(capsys, "results", "somejob", "--compare", str(mapped), "--totals",
                           "--embedded", str(tmp_path / "no-state.json"))
    assert code == 2 and "not with --compare" in err


@pytest.mark.parametrize("content, message", [
    (None, "polygons file not found"),
    ('{"type": "FeatureCollection", "features": []}', "has no features"),
    ("{nope", "not GeoJSON (not valid JSON"),
    ('{"type": "Point", "coordinates": [1, 2]}', "no usable building polygon in it, no polygon to total the results "
                                                 "within (1 feature(s), none a valid Polygon or MultiPolygon: 1 Point"),
])
@pytest.mark.parametrize("compare", [False, True])
def test_within_errors_name_the_file(tmp_path, capsys, content, message, compare):
    # Both `results --within` and `results --compare --within`, checked before any AWS call.
    tasks = tmp_path / "tasks.geojson"
    if content is not None:
        tasks.write_text(content)
    mapped = tmp_path / "mapped.geojson"
    mapped.write_text('{"type": "FeatureCollection", "features": []}')
    extra = ["--compare", str(mapped)] if compare else []
    code, out, err = run_cli(capsys, "results", "somejob", *extra, "--within", str(tasks),
                             "--embedded", str(tmp_path / "no-state.json"))
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: --within {tasks}: ") and message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["mapped.geojson"] + (["tasks.geojson"] if content else []))


def test_compare_within_reads_its_polygons_by_the_shared_rule(tmp_path, capsys):
    """``results --compare --within`` shares the --within reader: a Point beside a polygon is one
    warning line, and the command goes on (here to the missing deployment)."""
    ring = [[30.06, -1.95], [30.07, -1.95], [30.07, -1.94], [30.06, -1.94], [30.06, -1.95]]
    tasks = tmp_path / "tasks.geojson"
    tasks.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": ring[0]}},
        {"type": "Feature", "properties": {"name": "task 1"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    mapped = tmp_path / "mapped.geojson"
    mapped.write_text('{"type": "FeatureCollection", "features": []}')
    code, _, err = run_cli(capsys, "results", "somejob", "--compare", str(mapped), "--within", str(tasks),
                           "--embedded", str(tmp_path / "no-state.json"))
    warning, error = err.strip().splitlines()
    assert warning == (f"warning: --within {tasks}: 1 feature(s) skipped (1 Point), the rest used (1): "
                       "feature 0: a Point, not a polygon")
    assert code == 1 and error.startswith("error: no embedded run") and "--within" not in error

"""``looking-glass export``: bad arguments end with one error line and exit status 2 before any
AWS call (the export itself: tests/integration/test_export_buildings.py, tests/e2e/test_outlines_e2e.py)."""

from __future__ import annotations

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
    ("{nope", "not GeoJSON text"),
    ('{"type": "Point", "coordinates": [1, 2]}', "feature 0 is a Point"),
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

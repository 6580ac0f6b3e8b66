"""``results --compare``'s explanations: the warning for a mapped file with nothing on the job
says whether anything of it lies near the job at all (not "read 0 at most per band"), rows
with building area but a count of 0 (counts go by centre, areas are shared) get a note line,
features that are no polygons are named in a warning, and a file without one polygon is an
error (nothing to compare against)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import run_cli
from test_export_buildings import ALL, JOB, X0, Y0, _mapped_file, put_job

from looking_glass.grid import tile_box
from looking_glass.outlines.errors import InvalidGeometryWarning
from looking_glass.results.bands import job_items
from looking_glass.results.buildings import job_buildings
from looking_glass.results.gap import EmptyReferenceWarning, count_note, job_gap, render_gap


def _point(x, y):
    """A GeoJSON Point feature at the centre of zoom-18 tile (x, y)."""
    c = tile_box(x, y, 18).centroid
    return {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [c.x, c.y]}}


def test_a_mapped_file_without_a_polygon_is_one_error_line_and_exit_2(aws, moto_endpoint, tmp_path, monkeypatch, capsys):
    # The new user's point.geojson: a Point on the job. It was "no feature of the file lies within
    # their extent" and completeness 0% with exit 0.
    from looking_glass.local.deployment import write_state

    session, names, res = aws
    put_job(aws, ALL)
    state = tmp_path / "embedded.json"
    write_state(state, moto_endpoint, res, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))
    point = tmp_path / "point.geojson"
    point.write_text(json.dumps(_point(X0, Y0)))
    code, out, err = run_cli(capsys, "results", JOB, "--compare", str(point), "--no-progress")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {point}: no usable building polygon in it, nothing to compare against")
    assert "feature 0: a Point, not a polygon" in err


@pytest.mark.parametrize("command", ["map", "export"])
def test_map_and_export_refuse_a_mapped_file_without_a_polygon_before_drawing_or_writing(
        aws, moto_endpoint, tmp_path, monkeypatch, capsys, command):
    # map --compare drew map.png and map.html, and only then said there was nothing to compare against.
    from looking_glass.local.deployment import write_state

    session, names, res = aws
    put_job(aws, ALL)
    state = tmp_path / "embedded.json"
    write_state(state, moto_endpoint, res, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))
    point = tmp_path / "point.geojson"
    point.write_text(json.dumps({"type": "FeatureCollection", "features": [_point(X0, Y0), _point(X0 + 1, Y0)]}))
    out = tmp_path / "drawn"
    argv = (["map", JOB, "--out", str(out), "--compare", str(point)] if command == "map"
            else ["export", JOB, "--out", str(out / "todo.osm"), "--unmapped", str(point), "--no-progress"])
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {point}: no usable building polygon in it, nothing to compare against (2 feature(s), "
                          "none a valid Polygon or MultiPolygon: 2 Points: feature 0: a Point, not a polygon")
    assert not out.exists() or not any(out.iterdir())  # nothing drawn, nothing written


@pytest.mark.parametrize("command", ["results", "export"])
def test_a_mapped_file_in_metres_without_a_crs_is_one_error_line_and_exit_2(
        aws, moto_endpoint, tmp_path, monkeypatch, capsys, command):
    # The SpaceNet footprints (UTM metres) without their crs member: results --compare said
    # "mapped 0 ... completeness 0.0 %", exit 0.
    from pathlib import Path

    from looking_glass.local.deployment import write_state

    session, names, res = aws
    put_job(aws, ALL)
    state = tmp_path / "embedded.json"
    write_state(state, moto_endpoint, res, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))
    doc = json.loads((Path(__file__).resolve().parents[1] / "data" / "spacenet_atlanta_sample" / "buildings.geojson").read_text())
    del doc["crs"]
    metres = tmp_path / "metres.geojson"
    metres.write_text(json.dumps(doc))
    out = tmp_path / "written"
    argv = (["results", JOB, "--compare", str(metres), "--no-progress"] if command == "results"
            else ["export", JOB, "--out", str(out / "todo.osm"), "--unmapped", str(metres), "--no-progress"])
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {metres}: coordinates such as (")
    assert "are not longitude/latitude degrees, yet the file declares no CRS" in err
    assert not out.exists()


def test_map_compares_against_the_reference_it_opened_before_drawing(aws, moto_endpoint, tmp_path, monkeypatch, capsys):
    from looking_glass.local.deployment import write_state

    session, names, res = aws
    put_job(aws, ALL)
    state = tmp_path / "embedded.json"
    write_state(state, moto_endpoint, res, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))
    mapped = _mapped_file(tmp_path / "mixed.geojson", [tile_box(X0, Y0, 18)], extra=[_point(X0 + 1, Y0)])
    code, out, err = run_cli(capsys, "map", JOB, "--out", str(tmp_path / "map"), "--compare", str(mapped))
    assert code == 0, err
    assert "gap.html also draws 1 mapped footprints" in out and (tmp_path / "map" / "gap.html").is_file()
    assert f"warning: {mapped}: 1 feature(s) skipped (1 Point), the rest used (1): feature 1: a Point" in err


def test_non_polygon_features_are_skipped_with_a_warning_naming_them(aws, tmp_path):
    store, s3, bucket = put_job(aws, ALL)
    path = _mapped_file(tmp_path / "mixed.geojson", [tile_box(X0, Y0, 18)], extra=[
        _point(X0 + 1, Y0), {"type": "Feature", "properties": {}, "geometry": None}])
    with pytest.warns(InvalidGeometryWarning) as seen:
        gap = job_gap(store, s3, bucket, JOB, path)
    (message,) = [str(w.message) for w in seen]
    assert "2 feature(s) skipped" in message and "the rest used" in message
    assert "feature 1: a Point, not a polygon" in message and "feature 2: no geometry" in message
    assert gap.summary["mapped_count"] == 1 and gap.summary["mapped_features_skipped"] == 2


def test_nothing_near_the_job_says_so(aws, tmp_path):
    store, s3, bucket = put_job(aws, ALL)
    path = _mapped_file(tmp_path / "far.geojson", [tile_box(X0 + 500, Y0 + 500, 18)])
    with pytest.warns(EmptyReferenceWarning) as seen:
        job_gap(store, s3, bucket, JOB, path)
    (message,) = [str(w.message) for w in seen]
    assert "no mapped building within the job's 6 done tiles and none near them either" in message
    assert "per band" not in message


def test_features_near_the_job_but_on_no_done_tile_are_counted_in_the_warning(aws, tmp_path):
    # Tiles 0 and 2 of the row are done, tile 1 between them failed: a mapped building there is
    # near the job (read with its done tiles) but on no done tile.
    store, s3, bucket = put_job(aws, {(0, 0): "done", (1, 0): "failed", (2, 0): "done"})
    w, s, e, n = tile_box(X0 + 1, Y0, 18).bounds
    inside = tile_box(X0 + 1, Y0, 18).buffer(-(e - w) / 4)
    path = _mapped_file(tmp_path / "between.geojson", [inside])
    with pytest.warns(EmptyReferenceWarning) as seen:
        job_gap(store, s3, bucket, JOB, path)
    (message,) = [str(w.message) for w in seen]
    assert "(up to 1 of its features lie near them, none on a done tile)" in message


def test_rows_with_area_but_no_count_get_a_note(aws, tmp_path):
    store, s3, bucket = put_job(aws, ALL)
    buildings = list(job_buildings(s3, bucket, job_items(store, JOB)))
    across = next(b for b in buildings if b.tiles == 4)  # the building across four tiles: one holds its centre
    path = _mapped_file(tmp_path / "osm.geojson", [across.polygon])
    gap = job_gap(store, s3, bucket, JOB, path)
    odd = [r for r in gap.rows if r["mapped_area_m2"] > 0 and r["mapped_count"] == 0]
    assert len(odd) == 3
    note = count_note(gap)
    assert note.startswith("note: 3 row(s) have building area but a count of 0") and "centre" in note
    assert render_gap("table", gap).splitlines()[-2] == note  # before the line on results' totals
    assert "note:" not in render_gap("csv", gap)  # CSV stays data only (the CLI prints it on stderr)
    assert len(list(csv.DictReader(io.StringIO(render_gap("csv", gap))))) == len(gap.rows)


def test_no_note_when_areas_and_counts_agree(aws, tmp_path):
    store, s3, bucket = put_job(aws, {(0, 0): "done"})
    buildings = list(job_buildings(s3, bucket, job_items(store, JOB)))
    path = _mapped_file(tmp_path / "osm.geojson", [b.polygon for b in buildings if b.tiles == 1])
    gap = job_gap(store, s3, bucket, JOB, path)
    assert count_note(gap) is None and "note:" not in render_gap("table", gap)


def _shipped_run():
    """``ID/VERSION`` of the shipped model and the phrase its sidecar's real-imagery figure gives."""
    from looking_glass.model.registry import real_imagery_figure
    from looking_glass.model.segmenter import SHIPPED_MODEL
    from looking_glass.model.sidecar import sidecar_path

    sidecar = json.loads(sidecar_path(SHIPPED_MODEL).read_text())
    head = sidecar["real_imagery"]["headline"]  # what the evaluation recorded, as the note words it
    figure = f"object F1 {head['object_f1']:.3f} (pixel IoU {head['pixel_iou']:.3f}) on {head['dataset']}"
    assert real_imagery_figure(sidecar).startswith(figure)
    return f"{sidecar['model_id']}/{sidecar['version']}", real_imagery_figure(sidecar)


@pytest.mark.parametrize("command", ["results", "map"])
@pytest.mark.parametrize("recorded", [True, False])
def test_the_gap_ends_with_a_note_on_the_models_false_detections_and_its_real_imagery_figure(
        aws, moto_endpoint, tmp_path, monkeypatch, capsys, command, recorded):
    # A new user read "unmapped 900 m2" as 900 m2 of buildings to map; with the shipped model
    # (pixel precision 0.60 on real imagery) much of it may be the model's false detections.
    from looking_glass.local.deployment import write_state

    session, names, res = aws
    run, figure = _shipped_run()
    model_id, version = run.split("/") if recorded else ("seg", "9")  # seg/9: registered nowhere
    put_job(aws, ALL, provenance={"model_id": model_id, "model_version": version})
    state = tmp_path / "embedded.json"
    write_state(state, moto_endpoint, res, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    monkeypatch.setenv("LG_EMBEDDED_STATE", str(state))
    mapped = _mapped_file(tmp_path / "mapped.geojson", [tile_box(X0, Y0, 18)])
    argv = (["results", JOB, "--compare", str(mapped), "--no-progress"] if command == "results"
            else ["map", JOB, "--out", str(tmp_path / "map"), "--compare", str(mapped)])
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "not yet mapped" in out if command == "map" else "completeness" in out
    last = err.strip().splitlines()[-1]
    assert [line for line in err.splitlines() if line.startswith("note: ")] == [last]  # one note, the last line
    assert last.startswith("note: the buildings not yet mapped are the model's buildings that no mapped building "
                           "touches, its false detections included; ")
    said = f"model {run} recorded {figure}" if recorded else "model seg/9 has no recorded evaluation on real imagery"
    assert said in last and last.endswith("review them against the imagery before acting on the gap")

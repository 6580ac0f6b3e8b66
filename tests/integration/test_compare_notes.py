"""``results --compare``'s two explanations: the warning for a mapped file with nothing on the job
says whether anything of it lies near the job at all (not "read 0 at most per band"), and rows
with building area but a count of 0 (counts go by centre, areas are shared) get a note line."""

from __future__ import annotations

import csv
import io

import pytest
from test_export_buildings import ALL, JOB, X0, Y0, _mapped_file, put_job

from looking_glass.grid import tile_box
from looking_glass.results.bands import job_items
from looking_glass.results.buildings import job_buildings
from looking_glass.results.gap import EmptyReferenceWarning, count_note, job_gap, render_gap


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

"""An ``.osm`` export's note on accuracy: the real-imagery figure recorded in the sidecar of the
model that produced the job's tiles (the shipped one's, or a registered version's from the
registry), or that the model records none; never blocking the export."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_export_buildings import JOB, put_job

from looking_glass.cli.outlines import accuracy_note
from looking_glass.model.registry import real_imagery_figure, run_sidecar
from looking_glass.model.segmenter import SHIPPED_MODEL
from looking_glass.model.sidecar import sidecar_path

SHIPPED = json.loads(sidecar_path(SHIPPED_MODEL).read_text())
SHIPPED_RUN = f"{SHIPPED['model_id']}/{SHIPPED['version']}"


def test_the_shipped_sidecar_records_its_real_imagery_figure():
    figure = real_imagery_figure(SHIPPED)
    head = SHIPPED["real_imagery"]["headline"]
    assert 0 <= head["object_f1"] <= 1 and 0 <= head["pixel_iou"] <= 1  # (the evaluation command's numbers)
    assert figure.startswith(f"object F1 {head['object_f1']:.3f} (pixel IoU {head['pixel_iou']:.3f}) on the SpaceNet Atlanta sample")


@pytest.mark.parametrize("sidecar", [
    {}, {"real_imagery": "good"}, {"real_imagery": {"statement": "x"}}, {"real_imagery": {"headline": {"dataset": "d"}}},
    {"real_imagery": {"headline": {"object_f1": True}}}, {"validation": {"val_iou": 0.9}},
])
def test_a_sidecar_without_a_real_imagery_figure_records_none(sidecar):
    assert real_imagery_figure(sidecar) is None


def test_run_sidecar_finds_the_shipped_and_registered_ones(aws):
    session, _, resources = aws
    s3, bucket = session.client("s3"), resources.masks_bucket
    assert run_sidecar(s3, bucket, SHIPPED_RUN) == SHIPPED
    card = {"model_id": "seg", "version": "7", "real_imagery": {"headline": {"pixel_iou": 0.4, "dataset": "kigali"}}}
    s3.put_object(Bucket=bucket, Key="registry/seg/7/model.json", Body=json.dumps(card).encode())
    assert real_imagery_figure(run_sidecar(s3, bucket, "seg/7")) == "pixel IoU 0.400 on kigali"
    s3.put_object(Bucket=bucket, Key="registry/seg/8/model.json", Body=b"{not json")
    for unknown in ("seg/8", "seg/9", "seg", "../x/1"):  # unreadable, not registered, no version, not a name
        assert run_sidecar(s3, bucket, unknown) is None


def _dep(aws):
    session, _, resources = aws
    return SimpleNamespace(client=session.client, resources=resources)


def test_the_note_gives_the_recorded_figure_or_says_there_is_none(aws):
    store, _, _ = put_job(aws, {(0, 0): "done"}, provenance={"model_id": SHIPPED["model_id"],
                                                             "model_version": SHIPPED["version"]})
    note = accuracy_note(_dep(aws), store, JOB)
    head = SHIPPED["real_imagery"]["headline"]  # what the sidecar records, as the note words it
    assert note.startswith(f"note: model {SHIPPED_RUN} recorded object F1 {head['object_f1']:.3f} "
                           f"(pixel IoU {head['pixel_iou']:.3f}) on the SpaceNet")
    assert note.endswith("review every outline against the imagery before uploading any to OpenStreetMap")


def test_a_model_with_no_recorded_evaluation_says_so(aws):
    store, _, _ = put_job(aws, {(0, 0): "done"}, provenance={"model_id": "seg", "model_version": "9"})
    assert accuracy_note(_dep(aws), store, JOB).startswith("note: model seg/9 has no recorded evaluation on real imagery")

"""The demo names its model as ``results`` does: ``ID/VERSION`` (run_label) in summary.json's
``model.label``, the printed table and map.png's title, not the bare id."""

from __future__ import annotations

from looking_glass.local.demo import demo_model, print_summary
from looking_glass.model.registry import run_label


def test_the_demo_model_is_labelled_id_slash_version_like_results(capsys):
    items = [{"model_id": "deeplabv3plus-mobilenetv2a035-synthetic", "model_version": "3"}, {"model_id": "other"}]
    model = demo_model(items, "")
    assert model["label"] == "deeplabv3plus-mobilenetv2a035-synthetic/3" == run_label("deeplabv3plus-mobilenetv2a035-synthetic", 3)
    assert model["model_id"] == "deeplabv3plus-mobilenetv2a035-synthetic" and "trained" in model
    print_summary({"job_id": "j", "model": model, "model_trained": True})
    table = capsys.readouterr().out
    (row,) = [line for line in table.splitlines() if line.startswith("| model ")]
    assert row.split("|")[2].strip() == "deeplabv3plus-mobilenetv2a035-synthetic/3"


def test_no_recorded_model_is_an_empty_label():
    assert demo_model([], "")["label"] == "" and demo_model([{"model_id": "m"}], "")["label"] == "m"

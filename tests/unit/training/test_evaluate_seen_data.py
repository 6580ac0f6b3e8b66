"""``evaluate --data`` warns when the dataset is the model's own training data (a new user took
the score of a model on its own chips for a test score): a real one-epoch ``train --local`` run
evaluated on its dataset, on a copy of it (same manifest), and on other chips (no warning)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli
from test_train import SIZE, _cropped_chips, dataset, trained  # noqa: F401 -- the module's tiny dataset and run

from looking_glass.datasets.chips import FORMAT_NAME
from looking_glass.datasets.prepare import write_dataset
from looking_glass.training.seen_data import own_data_warning, same_data


def _evaluate(capsys, model, data):
    code, out, err = run_cli(capsys, "evaluate", "--model", str(model), "--data", str(data))
    assert code == 0, err
    assert "iou" in json.loads(out)  # the scores are printed either way
    return [line for line in err.splitlines() if line.startswith("warning: ")]


def test_evaluating_a_model_on_its_own_training_data_warns(trained, dataset, tmp_path, capsys):  # noqa: F811
    root, code, lines, _ = trained
    assert code == 0, "\n".join(lines[-30:])
    model = root / "model" / "model.keras"
    meta = json.loads(model.with_suffix(".json").read_text())
    label = f"{meta['model_id']}/{meta['version']}"

    # train --local linked both channels to the dataset: these are the chips its training validated on
    assert _evaluate(capsys, model, dataset) == [
        f"warning: --data {dataset} is the dataset model {label} was trained and validated on: these validation "
        "chips are the ones its training scored, so this is its validation score, not a test score on unseen data"]

    copy = tmp_path / "copy"  # the same dataset elsewhere (e.g. downloaded again): the same manifest
    shutil.copytree(dataset, copy)
    created = json.loads((dataset / "manifest.json").read_text())["created"]
    (warning,) = _evaluate(capsys, model, copy)
    assert warning.startswith(f"warning: --data {copy} is a copy of the dataset (the same manifest, created {created}) "
                              f"model {label} was trained and validated on")

    other = tmp_path / "other"  # other chips: a score on data the run never read
    write_dataset(other, _cropped_chips(9), chip_size=SIZE)
    assert _evaluate(capsys, model, other) == []


MANIFEST = {"format": FORMAT_NAME, "created": "2026-12-01T03:00:00+00:00", "counts": {"train": 8, "validation": 4}, "mode": "tiles",
            "chip_size": 64, "class_balance": {"building_pixel_fraction": 0.3}}


@pytest.mark.parametrize("recorded, expected", [
    (None, None),
    ({"kind": "dataset", "path": "/opt/ml/input/data/train", "manifest": MANIFEST}, "manifest"),  # a SageMaker job
    ({"kind": "dataset", "path": "/elsewhere", "manifest": {**MANIFEST, "created": "2026-12-01T03:00:01+00:00"}}, None),
    ({"kind": "dataset", "path": "/elsewhere", "manifest": {**MANIFEST, "counts": {"train": 9, "validation": 4}}}, None),
    ({"kind": "dataset", "path": "/elsewhere", "manifest": {k: v for k, v in MANIFEST.items() if k != "created"}}, None),
    ({"kind": "dataset", "path": "/elsewhere", "manifest": {"created": MANIFEST["created"], "mode": "tiles"}}, "manifest"),
    ({"kind": "dataset", "path": "DATA"}, "folder"),
    ({"kind": "dataset", "path": "/link", "resolved_path": "DATA"}, "folder"),
    ({"kind": "shards", "path": "DATA/validation"}, "folder"),  # bare shards: the folder evaluate reads
    ({"kind": "shards", "path": "DATA"}, None),
])
def test_a_recorded_channel_is_the_dataset_by_folder_or_manifest(tmp_path, recorded, expected):
    data = tmp_path / "data"
    (data / "validation").mkdir(parents=True)
    if recorded is not None:
        recorded = {k: v.replace("DATA", str(data)) if isinstance(v, str) else v for k, v in recorded.items()}
    assert same_data(recorded, data, MANIFEST) == expected


def test_no_warning_without_recorded_training_data_or_a_readable_manifest(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    own = {"model_id": "m", "version": "1", "training": {"data": {"train": {"kind": "dataset", "path": str(data)}}}}
    assert own_data_warning(own, data) is None  # no manifest.json: not a dataset evaluate reads
    (data / "manifest.json").write_text(json.dumps(MANIFEST))
    assert own_data_warning(own, data).startswith(f"warning: --data {data} is the dataset model m/1 was trained on: "
                                                  "its validation chips were held out of training")
    for sidecar in ({}, {"training": None}, {"training": {"data": "x"}}, None):
        assert own_data_warning(sidecar, data) is None

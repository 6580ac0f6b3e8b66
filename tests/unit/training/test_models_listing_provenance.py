"""``looking-glass models`` says where each VAL_IOU/VAL_F1 was measured (a new user read the column
as accuracy on their own imagery): the validation chips of the data the version was trained on,
from its sidecar, and for the shipped model that they are synthetic, with its real-imagery figure.
The trained version is a real one-epoch ``train --local`` run, registered in the embedded moto."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from test_train import dataset, trained  # noqa: F401 -- the module's tiny dataset and one-epoch run

from looking_glass.local.deployment import write_state
from looking_glass.model import registry


@pytest.fixture
def state(aws, tmp_path, moto_endpoint) -> str:
    _, _, resources = aws
    path = tmp_path / "embedded.json"
    write_state(path, moto_endpoint, resources, "http://127.0.0.1:1/{z}/{x}/{y}.png")
    return str(path)


def test_the_listing_names_each_versions_validation_data(trained, dataset, state, capsys):  # noqa: F811
    root, code, lines, _ = trained
    assert code == 0, "\n".join(lines[-30:])
    model = root / "model" / "model.keras"
    code, out, err = run_cli(capsys, "models", "register", str(model), "--version", "west1", "--embedded", state)
    assert code == 0, err
    meta = json.loads(model.with_suffix(".json").read_text())
    name = f"{meta['model_id']}/west1"
    val_chips = json.loads((dataset / "manifest.json").read_text())["counts"]["validation"]

    code, out, err = run_cli(capsys, "models", "--embedded", state)
    assert code == 0, err
    note = out.splitlines()
    at = next(i for i, line in enumerate(note) if line.startswith("VAL_IOU/VAL_F1:"))
    assert "not on your imagery" in note[at]
    # The channel the run read was a link to the dataset given to train --local: that is named.
    assert f"  {name}: the validation split of {dataset.resolve()} ({val_chips} chips)" in note[at + 1:]
    shipped = registry.shipped_record()
    synthetic = shipped.sidecar["training"]["data"]["validation"]["chips"]
    headline = shipped.sidecar["real_imagery"]["headline"]
    shipped_line = next(line for line in note[at + 1:] if line.startswith(f"  {shipped.name}: "))
    assert f"{synthetic} synthetic chips (synth-data), not real imagery" in shipped_line
    assert f"real imagery: object F1 {headline['object_f1']:.3f} (pixel IoU {headline['pixel_iou']:.3f})" in shipped_line
    assert headline["dataset"] in shipped_line

    rows = {r["version"]: r for r in json.loads(run_cli(capsys, "models", "--embedded", state, "--json")[1])["models"]}
    assert rows["west1"]["validated_on"] == f"the validation split of {dataset.resolve()} ({val_chips} chips)"
    assert rows["west1"]["real_imagery"] is None and rows[str(shipped.version)]["real_imagery"]


@pytest.mark.parametrize("training, expected", [
    (None, "not recorded"),
    ({"job": "lg-train-20261201", "data": {"validation": {"chips": 12, "path": "/opt/ml/input/data/validation",
                                                          "kind": "dataset"}}},
     "the validation channel of SageMaker training job lg-train-20261201 (12 chips)"),
    ({"job": None, "data": {"validation": {"chips": 5, "path": "/data/shards", "kind": "shards"}}},
     "the shards in /data/shards (5 chips)"),
    ({"data": {"validation": None}}, "not recorded"),
])
def test_validation_data_from_what_training_recorded(training, expected):
    sidecar = {"model_id": "m", "version": "1"} if training is None else {"training": training}
    assert registry.validation_data(sidecar) == expected

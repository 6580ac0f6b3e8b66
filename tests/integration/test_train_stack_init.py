"""``train --stack --init``: the starting model is checked, uploaded to the init channel's prefix
and the execution asks for the channel; a bad model is refused before anything is uploaded
(moto, with the fixtures of test_train_stack)."""

from __future__ import annotations

import json

import pytest
from test_train_stack import executions, keys, make_dataset, training_stack  # noqa: F401 -- the fixture

from looking_glass.cli.main import main
from looking_glass.training.contract import INIT_PREFIX


def _model(folder, head="binary"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: enough for the checks before the upload
    path.with_suffix(".json").write_text(json.dumps({"model_id": "m", "version": "1",
                                                     "config": {"head": head, "input_size": 256}}))
    return path


def test_init_model_is_uploaded_and_the_execution_asks_for_the_channel(training_stack, tmp_path, capsys):  # noqa: F811
    name, bucket, machine = training_stack
    data = make_dataset(tmp_path / "data")
    model = _model(tmp_path / "start")
    assert main(["train", "--stack", name, "--data", str(data), "--init", str(model)]) == 0
    assert {INIT_PREFIX + "model.keras", INIT_PREFIX + "model.json"} <= keys(bucket)
    doc = json.loads(executions(machine)[0]["input"])
    assert doc["init"] is True and doc["hyperparameters"]["init_source"] == str(model)


@pytest.mark.parametrize("problem", ["missing", "head"])
def test_a_bad_init_model_is_refused_before_anything_is_uploaded(training_stack, tmp_path, problem):  # noqa: F811
    name, bucket, machine = training_stack
    data = make_dataset(tmp_path / "data")
    model = tmp_path / "nope.keras" if problem == "missing" else _model(tmp_path / "start")
    args = ["train", "--stack", name, "--data", str(data), "--init", str(model)]
    if problem == "head":
        args += ["--hyperparameters", '{"head": "sdt"}']
    with pytest.raises(SystemExit, match="does not exist" if problem == "missing" else "init model"):
        main(args)
    assert keys(bucket) == set() and executions(machine) == []

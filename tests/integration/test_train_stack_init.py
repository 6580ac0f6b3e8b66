"""``train --stack --init``: the starting model is checked, uploaded to the init channel's prefix
and the execution asks for the channel; a bad model is refused before anything is uploaded
(moto, with the fixtures of test_train_stack)."""

from __future__ import annotations

import json

import pytest
from conftest import model_copy
from test_train_stack import executions, keys, make_dataset, training_stack  # noqa: F401 -- the fixture

from looking_glass.cli.main import main
from looking_glass.training.contract import INIT_PREFIX


def _model(folder):
    """A real model (a copy of the shipped one, binary head, 256 px): ``--init`` checks it is a
    Keras archive that matches its sidecar before anything is uploaded."""
    return model_copy(folder, "1", model_id="m")


def test_init_model_is_uploaded_and_the_execution_asks_for_the_channel(training_stack, tmp_path, capsys):  # noqa: F811
    name, bucket, machine = training_stack
    data = make_dataset(tmp_path / "data")
    model = _model(tmp_path / "start")
    assert main(["train", "--stack", name, "--data", str(data), "--init", str(model)]) == 0
    assert {INIT_PREFIX + "model.keras", INIT_PREFIX + "model.json"} <= keys(bucket)
    doc = json.loads(executions(machine)[0]["input"])
    assert doc["init"] is True and doc["hyperparameters"]["init_source"] == str(model)


@pytest.mark.parametrize("problem", ["missing", "head", "corrupt"])
def test_a_bad_init_model_is_refused_before_anything_is_uploaded(training_stack, tmp_path, problem):  # noqa: F811
    name, bucket, machine = training_stack
    data = make_dataset(tmp_path / "data")
    model = tmp_path / "nope.keras" if problem == "missing" else _model(tmp_path / "start")
    args = ["train", "--stack", name, "--data", str(data), "--init", str(model)]
    if problem == "head":
        args += ["--hyperparameters", '{"head": "sdt"}']
    if problem == "corrupt":  # an empty zip with a real sidecar: no Keras config.json in it
        model.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    match = {"missing": "does not exist", "head": "init model", "corrupt": "without Keras's config.json"}[problem]
    with pytest.raises(SystemExit, match=match):
        main(args)
    assert keys(bucket) == set() and executions(machine) == []

"""A folder given as a prepared dataset (evaluate/plot --data, train --local/--stack --data) that
is not one is ONE line naming the folder, what it is, and how to make one; exit status 2, before
TensorFlow or a stack is touched (looking_glass.datasets.chips.read_manifest)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from looking_glass.datasets.chips import read_manifest
from looking_glass.datasets.errors import DatasetError

MAKE_ONE = "make one with `looking-glass prepare --images IMAGE.tif --footprints BUILDINGS.geojson --out FOLDER`"


def _folder(tmp_path, case: str):
    """A bad dataset folder of kind ``case`` and the words its refusal must contain."""
    folder = tmp_path / "data"
    if case == "missing":
        return folder, "data: no such folder: "
    if case == "file":
        folder.write_text("x")
        return folder, "data: a file, not a prepared dataset folder: "
    folder.mkdir()
    if case == "empty":
        return folder, "data: not a prepared dataset (no manifest.json): "
    text = {"bad_json": "{not json", "other_json": json.dumps({"type": "FeatureCollection", "features": []}),
            "list": "[1, 2]", "no_chip_size": json.dumps({"format": "looking-glass-chips"})}[case]
    (folder / "manifest.json").write_text(text)
    return folder, {"bad_json": "manifest.json: not valid JSON (", "list": "not a looking-glass-chips manifest (a JSON list)",
                    "other_json": "manifest.json: not a looking-glass-chips manifest (no 'format' field): ",
                    "no_chip_size": "manifest.json: chip_size None is not a positive whole number"}[case]


CASES = ["missing", "file", "empty", "bad_json", "other_json", "list", "no_chip_size"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", [
    ["evaluate", "--data", "DATA"],
    ["plot", "--data", "DATA", "--out", "p.png"],
    ["train", "--local", "--data", "DATA"],
    ["train", "--stack", "nostack", "--data", "DATA"],
])
def test_a_folder_that_is_not_a_prepared_dataset_is_one_line(tmp_path, capsys, monkeypatch, case, command):
    monkeypatch.chdir(tmp_path)
    folder, words = _folder(tmp_path, case)
    code, out, err = run_cli(capsys, *[str(folder) if a == "DATA" else a for a in command])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: {folder}") and words in err and MAKE_ONE in err
    assert "Errno" not in err and "Traceback" not in err


def test_a_prepared_dataset_reads(tmp_path, capsys):
    """The right value: synth-data's output is a dataset (the check refuses no real one)."""
    code, _, _ = run_cli(capsys, "synth-data", "--tiles", "2", "--out", str(tmp_path / "synth"))
    assert code == 0
    manifest = read_manifest(tmp_path / "synth")
    assert manifest["format"] == "looking-glass-chips" and manifest["chip_size"] == 256
    with pytest.raises(DatasetError, match="no such folder") as err:
        read_manifest(tmp_path / "other")
    assert err.value.exit_code == 2

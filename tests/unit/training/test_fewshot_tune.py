"""benchmarks/fewshot_tune.py: the north/south folds inside the few-shot benchmark's WEST chips."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "fewshot_tune.py"


@pytest.fixture(scope="module")
def tune():
    spec = importlib.util.spec_from_file_location("fewshot_tune", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _west(folder: Path, ids: list[str]) -> Path:
    """A prepared dataset whose train split holds one 8 px chip per id (its value its index)."""
    (folder / "train").mkdir(parents=True)
    n = len(ids)
    image = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    np.savez(folder / "train" / "shard-00000.npz", image=image, mask=np.zeros((n, 8, 8), np.uint8),
             sdt=np.zeros((n, 8, 8), np.float32), chip_ids=np.array(ids))
    (folder / "manifest.json").write_text(json.dumps({"format": "looking-glass-chips", "chip_size": 8, "counts": {"train": n, "validation": 0}}))
    return folder


def test_folds_split_by_tile_row(tmp_path, tune):
    ids = [f"west_18_{x}_{y}" for x in (10, 11) for y in (20, 21, 22, 23)]
    west = _west(tmp_path / "WEST", ids)
    ns = tune.split_west(west, "NS", tmp_path / "ns")
    assert ns["train"] == [i for i in ids if int(i[-2:]) <= 21] and ns["validation"] == [i for i in ids if int(i[-2:]) >= 22]
    sn = tune.split_west(west, "SN", tmp_path / "sn")
    assert sn == {"train": ns["validation"], "validation": ns["train"]}
    with np.load(tmp_path / "sn" / "train" / "shard-00000.npz") as z:
        assert list(z["chip_ids"]) == sn["train"]
        assert [int(v) for v in z["image"][:, 0, 0, 0]] == [ids.index(i) for i in sn["train"]]  # images follow their ids
    manifest = json.loads((tmp_path / "sn" / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 4, "validation": 4}


@pytest.mark.parametrize("ids, message", [
    (["west_r000_c000", "west_r001_c000"], "not <image>_<zoom>_<x>_<y> tiles"),
    (["west_18_10_20", "west_18_11_20"], "one tile row"),
])
def test_chips_that_cannot_be_split_are_refused(tmp_path, tune, ids, message):
    with pytest.raises(SystemExit, match=message):
        tune.split_west(_west(tmp_path / "WEST", ids), "NS", tmp_path / "out")


def test_bad_arguments_are_refused_before_training(tmp_path, tune, capsys):
    west = _west(tmp_path / "WEST", ["west_18_10_20", "west_18_10_21"])
    for argv, message in (([str(west), "--fold", "NS", "--root", str(tmp_path / "r"), "--hyperparameters", "{"],
                           "not JSON"),
                          ([str(west), "--fold", "NS", "--root", str(tmp_path / "r"), "--hyperparameters", "[1]"],
                           "JSON object"),
                          ([str(tmp_path), "--fold", "NS", "--root", str(tmp_path / "r")], "not a prepared dataset")):
        with pytest.raises(SystemExit) as exc:
            tune.main(argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()

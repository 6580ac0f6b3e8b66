"""The SageMaker training entry point (training/train.py) and the local runner, on a tiny dataset
(12 synthetic chips cropped to 64 px) and a tiny model (MobileNetV2 x0.35, 8 ASPP/decoder
filters, 64 px input)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

from looking_glass.datasets.prepare import load_split, signed_distance_m, write_dataset
from looking_glass.datasets.synthdata import synthetic_chips
from looking_glass.training import data, entrypoint, errors, hyperparameters, loop
from looking_glass.training.local import prepare_root, run_local

SIZE = 64
TINY = {"alpha": 0.35, "aspp_filters": 8, "decoder_filters": 8, "low_level_filters": 8, "input_size": SIZE,
        "batch_size": 4}


def _cropped_chips(n: int = 12):
    """Synthetic tiles cropped to their SIZE-px window with the most building pixels; every third
    chip is validation (the block split would put 12 neighbouring tiles in one split)."""
    for i, chip in enumerate(synthetic_chips(n, seed=3)):
        windows = [(y, x) for y in range(0, 256, SIZE) for x in range(0, 256, SIZE)]
        y, x = max(windows, key=lambda p: int(chip.mask[p[0]:p[0] + SIZE, p[1]:p[1] + SIZE].sum()))
        mask = chip.mask[y:y + SIZE, x:x + SIZE].copy()
        yield dataclasses.replace(
            chip,
            split="validation" if i % 3 == 2 else "train",
            image=chip.image[y:y + SIZE, x:x + SIZE].copy(),
            mask=mask,
            sdt=signed_distance_m(mask, chip.pixel_size_m, 10.0),
        )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "chips"
    write_dataset(out, _cropped_chips(), chip_size=SIZE)
    return out


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """One epoch through run_local (a subprocess running python -m looking_glass.training.entrypoint)."""
    root = tmp_path_factory.mktemp("run") / "root"
    lines: list[str] = []
    started = time.monotonic()
    code = run_local(dataset, root, {**TINY, "epochs": 1, "bn_momentum": 0.5, "seed": 1}, echo=lines.append)
    return root, code, lines, time.monotonic() - started


def _metric_lines(lines):
    return [ln for ln in lines if ln.startswith("epoch=")]


def _values(line: str) -> dict:
    out = {}
    for d in loop.METRIC_DEFINITIONS:
        m = re.search(d["Regex"], line)
        if m:
            out[d["Name"]] = float(m.group(1))
    return out


# --- metric lines ---------------------------------------------------------------------------------


def test_metric_definitions_parse_the_epoch_lines():
    binary = loop.metric_line(3, 0.1234, {"val_loss": 0.2345, "val_iou": 0.8123, "val_f1": 0.8901,
                                           "val_precision": 0.9, "val_recall": 0.88}, 12.0)
    assert binary.startswith("epoch=3 loss=0.123400 val_loss=0.234500 val_iou=0.812300 val_f1=0.890100")
    assert _values(binary) == pytest.approx({
        "epoch": 3, "train:loss": 0.1234, "validation:loss": 0.2345, "validation:iou": 0.8123,
        "validation:f1": 0.8901, "validation:precision": 0.9, "validation:recall": 0.88,
    })
    sdt = loop.metric_line(1, 2.5, {"val_loss": 3.0, "val_mse": 7.25, "val_iou": 0.5, "val_f1": 0.6}, 1.0)
    assert _values(sdt) == pytest.approx({
        "epoch": 1, "train:loss": 2.5, "validation:loss": 3.0, "validation:mse": 7.25,
        "validation:iou": 0.5, "validation:f1": 0.6,
    })
    # Without validation: the train loss only (its regex never reads val_loss).
    assert _values(loop.metric_line(2, 0.5, None, 1.0)) == {"epoch": 2, "train:loss": 0.5}
    names = [d["Name"] for d in loop.METRIC_DEFINITIONS]
    assert len(set(names)) == len(names)


# --- hyperparameters ------------------------------------------------------------------------------


def test_hyperparameters_parse_sagemaker_strings():
    hp = hyperparameters.parse_hyperparameters({
        "epochs": "3", "batch_size": 8, "learning_rate": "5e-4", "backbone": '"mobilenetv2"', "alpha": "0.35",
        "output_stride": "8", "head": "SDT", "imagenet": "false", "augment": "False", "threshold": "0.4",
        "input_size": "64", "max_train_chips": "5",
    })
    assert hp["epochs"] == 3 and hp["batch_size"] == 8 and hp["learning_rate"] == 5e-4
    assert hp["head"] == "sdt" and hp["output_stride"] == 8 and hp["augment"] is False and hp["imagenet"] is False
    assert hp["config"].head == "sdt" and hp["config"].input_size == 64
    assert hp["model_id"] == "deeplabv3plus-mobilenetv2a035-sdt-os8"
    defaults = hyperparameters.parse_hyperparameters({})
    assert defaults["epochs"] == 10 and defaults["batch_size"] == 16 and defaults["augment"] is True
    assert defaults["config"].to_dict() == hyperparameters.parse_hyperparameters({"input_size": 256})["config"].to_dict()
    assert "learning_rate" in hyperparameters.hyperparameter_table()


def _root_with_unchecked(dataset: Path, root: Path, raw: dict) -> Path:
    """A SageMaker root whose hyperparameters.json holds ``raw`` as given: prepare_root refuses
    bad values itself, but a job started another way (a stack, a hand-written root) meets them in
    the entry point, whose own checks these tests are about."""
    root = prepare_root(dataset, root, {})
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(raw) + "\n")
    return root


BAD_HYPERPARAMETERS = [
    ({"epochs": "zero"}, "epochs"),
    ({"epochs": "0"}, "epochs"),
    ({"learning_rate": "-1"}, "learning_rate"),
    ({"head": "cats"}, "head"),
    ({"batch_size": "513"}, "batch_size"),
    ({"augment": "maybe"}, "augment"),
    ({"threshold": "1.5"}, "threshold"),
    ({"alpha": "0.6"}, "alpha"),  # ModelConfig's own check
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize("raw, key", BAD_HYPERPARAMETERS)
def test_prepare_root_refuses_bad_hyperparameters_before_writing(tmp_path, dataset, raw, key):
    with pytest.raises(ValueError, match=key):
        prepare_root(dataset, tmp_path / "root", raw)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("raw, key", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_fail_naming_the_key(tmp_path, dataset, raw, key):
    root = _root_with_unchecked(dataset, tmp_path / "root", raw)
    assert entrypoint.main(["--root", str(root)]) == errors.EXIT_BAD_HYPERPARAMETERS
    reason = (root / "output" / "failure").read_text()
    assert key in reason
    if key == "colour":
        assert "epochs" in reason and "learning_rate" in reason  # the known keys are listed


def test_bad_hyperparameter_exit_code_of_the_process(tmp_path, dataset):
    root = _root_with_unchecked(dataset, tmp_path / "root", {"epochs": "zero"})
    proc = subprocess.run([sys.executable, "-m", "training.train", "--root", str(root)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "'epochs'" in proc.stderr
    assert "'epochs'" in (root / "output" / "failure").read_text()


def test_input_size_must_match_the_chips(tmp_path, dataset):
    root = prepare_root(dataset, tmp_path / "root", {**TINY, "input_size": "128"})
    assert entrypoint.main(["--root", str(root)]) == errors.EXIT_BAD_HYPERPARAMETERS
    reason = (root / "output" / "failure").read_text()
    assert "input_size" in reason and "64" in reason


def test_missing_train_channel_writes_a_failure(tmp_path, capsys):
    root = tmp_path / "root"
    assert entrypoint.main(["--root", str(root)]) == errors.EXIT_FAILURE
    reason = (root / "output" / "failure").read_text()
    assert "train channel" in reason and "does not exist" in reason
    assert "train channel" in capsys.readouterr().err


def test_channels_of_shards_and_missing_validation(tmp_path, dataset):
    src = data.resolve_channel(dataset / "train", "train", "train", required=True)
    assert src.kind == "shards" and src.shards
    src = data.resolve_channel(dataset, "validation", "validation", required=False)
    assert src.kind == "dataset" and src.manifest["chip_size"] == SIZE
    assert data.resolve_channel(tmp_path / "nothing", "validation", "validation", required=False) is None
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(errors.TrainingError, match="neither manifest.json"):
        data.resolve_channel(tmp_path / "junk", "train", "train", required=True)


def test_batches_are_a_function_of_seed_epoch_and_batch(dataset):
    hp = hyperparameters.parse_hyperparameters({**TINY})
    chips = data.load_chips(data.resolve_channel(dataset, "train", "train", True), "binary")
    a, b = data.epoch_batch(chips, hp, 3, 1), data.epoch_batch(chips, hp, 3, 1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == (4, SIZE, SIZE, 3) and a[1].shape == (4, SIZE, SIZE, 1)
    assert not np.array_equal(a[0], data.epoch_batch(chips, hp, 4, 1)[0])
    # augmentation moves image and mask together: building pixels stay building pixels
    plain = data.epoch_batch(chips, {**hp, "augment": False}, 3, 1)
    assert sorted(a[1].sum(axis=(1, 2, 3))) == sorted(plain[1].sum(axis=(1, 2, 3)))


# --- run_local ------------------------------------------------------------------------------------


def test_run_local_validates_its_inputs(tmp_path, dataset):
    with pytest.raises(ValueError, match="missing: no such folder: make one with `looking-glass prepare"):
        run_local(tmp_path / "missing", tmp_path / "root")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: not a prepared dataset \(no manifest.json\): make one"):
        run_local(tmp_path / "empty", tmp_path / "root")
    with pytest.raises(ValueError, match="must be a JSON object"):
        run_local(dataset, tmp_path / "root", [("epochs", 1)])
    with pytest.raises(ValueError, match="'epochs'"):
        run_local(dataset, tmp_path / "root", {"epochs": [1]})
    with pytest.raises(ValueError, match="'seed'"):
        run_local(dataset, tmp_path / "root", {"seed": None})


def test_prepare_root_lays_out_a_sagemaker_root(tmp_path, dataset):
    root = prepare_root(dataset, tmp_path / "root", {"epochs": 2, "augment": False, "learning_rate": 0.01})
    values = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    assert values == {"epochs": "2", "augment": "false", "learning_rate": "0.01"}
    for channel in ("train", "validation"):
        assert (root / "input" / "data" / channel / "manifest.json").exists()


# --- a training run -------------------------------------------------------------------------------


def test_one_epoch_produces_model_checkpoint_logs_and_gif(trained, dataset):
    root, code, lines, seconds = trained
    assert code == 0, "\n".join(lines)
    epochs = _metric_lines(lines)
    assert len(epochs) == 1 and epochs[0].startswith("epoch=1 loss=")
    values = _values(epochs[0])
    assert {"epoch", "train:loss", "validation:loss", "validation:iou", "validation:f1",
            "validation:precision", "validation:recall"} <= set(values)

    model_dir = root / "model"
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["trained"] is True and meta["model_id"] == "deeplabv3plus-mobilenetv2a035-binary"
    assert meta["config"]["input_size"] == SIZE and meta["threshold"] == 0.5
    record = meta["training"]
    assert record["hyperparameters"]["epochs"] == 1 and record["epochs_completed"] == 1
    assert record["data"]["train"]["chips"] == 8 and record["data"]["validation"]["chips"] == 4
    assert record["data"]["train"]["manifest"]["chip_size"] == SIZE
    assert len(record["metrics"]) == 1 and record["elapsed_seconds"] > 0
    assert record["metrics"][0]["val_iou"] == pytest.approx(values["validation:iou"], abs=1e-6)

    # Validation scores are dataset-level: counts over all 4 validation chips, scored once.
    from looking_glass.model.metrics import confusion_counts
    from looking_glass.model.segmenter import Segmenter

    val = load_split(dataset, "validation")
    counts = record["metrics"][0]["val_counts"]
    assert counts["tp"] + counts["fn"] == int(val["mask"].sum())
    seg = Segmenter.load(str(model_dir / "model.keras"))
    assert seg.info.trained and seg.info.model_id == meta["model_id"]
    pred = seg.predict_masks(val["image"])
    assert pred.shape == (4, SIZE, SIZE)
    again = confusion_counts(pred, val["mask"] == 1)
    assert abs(again.tp - counts["tp"]) + abs(again.fp - counts["fp"]) <= 0.001 * pred.size  # float noise only

    state = json.loads((root / "checkpoints" / "state.json").read_text())
    assert state["completed_epochs"] == 1 and (root / "checkpoints" / state["model"]).exists()
    assert (root / "checkpoints" / state["optimizer"]).exists()
    assert (root / "checkpoints" / "panels" / "epoch-0001.png").exists()
    tb = root / "output" / "tensorboard"
    for sub in ("train", "validation", "predictions"):
        assert list((tb / sub).glob("events.out.tfevents.*")), sub
    from PIL import Image

    for gif in (model_dir / "progress.gif", root / "output" / "data" / "progress.gif"):
        with Image.open(gif) as im:
            assert im.format == "GIF" and im.size[0] == 3 * SIZE
    if not any("SavedModel export failed" in ln for ln in lines):
        assert (model_dir / "export" / "saved_model.pb").exists()
    assert not (root / "output" / "failure").exists()


def test_second_run_resumes_from_the_checkpoint(trained, tmp_path, capsys):
    src, code, lines, _ = trained
    assert code == 0, "\n".join(lines)
    root = tmp_path / "root"
    shutil.copytree(src, root, symlinks=True)
    config = root / "input" / "config" / "hyperparameters.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "epochs": "2"}))

    assert entrypoint.main(["--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "initial epoch 1" in out and "optimizer state restored" in out
    epochs = _metric_lines(out.splitlines())
    assert len(epochs) == 1 and epochs[0].startswith("epoch=2 ")

    state = json.loads((root / "checkpoints" / "state.json").read_text())
    assert state["completed_epochs"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert sorted(p.name for p in (root / "checkpoints").glob("*.keras")) == ["epoch-0002.keras"]
    meta = json.loads((root / "model" / "model.json").read_text())
    assert meta["training"]["resumed_at_epochs"] == [1] and len(meta["training"]["metrics"]) == 2
    from PIL import Image

    with Image.open(root / "model" / "progress.gif") as im:
        assert im.n_frames == 2


def test_sigterm_checkpoints_and_exits_143(tmp_path, dataset):
    root = prepare_root(dataset, tmp_path / "root", {**TINY, "epochs": 1000, "batch_size": 2})
    proc = subprocess.Popen([sys.executable, "-m", "training.train", "--root", str(root)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("training started"):
                break
        assert any(ln.startswith("training started") for ln in seen), "".join(seen)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, "".join(seen) + out
    assert time.monotonic() - sent < 120
    assert "received SIGTERM" in out
    state = json.loads((root / "checkpoints" / "state.json").read_text())
    assert (root / "checkpoints" / state["model"]).exists()
    assert state["completed_epochs"] < 1000
    assert not (root / "output" / "failure").exists()
    assert not (root / "model" / "model.keras").exists()

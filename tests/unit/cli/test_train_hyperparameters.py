"""``train --hyperparameters`` is checked by the CLI before anything is staged, uploaded or
imported: a bad key or value, a missing file or text that is no JSON object, a bad combination
(``freeze_epochs`` not below ``epochs``, with a fine-tune's defaults too; a head other than the
init model's; model fields that do not go together) is one ``error:`` line, exit status 2,
nothing written (no --root folder), TensorFlow never loaded. So is a dataset without a train chip
(prepared with ``--val-fraction 1.0``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from looking_glass.training.hyperparameters import HyperparameterError, check_values, parse_hyperparameters


@pytest.mark.parametrize("where", [["--local", "--data", "DATA"], ["--stack", "Nowhere"]])
@pytest.mark.parametrize("given, message", [
    ('{"epochs": -1}', "hyperparameter 'epochs': -1 is outside [1, inf]"),
    ('{"epoch": 3}', "unknown hyperparameter 'epoch'; did you mean 'epochs'?"),
    ('{"learning_rat": 0.1, "zzz": 1}', "unknown hyperparameter 'learning_rat' (and 1 more unknown); did you mean 'learning_rate'?"),
    ('{"loss": "l2"}', "hyperparameter 'loss': 'l2' is not one of"),
    ("[1]", "--hyperparameters must be a JSON object"),
    ("{not json", "--hyperparameters is not JSON"),
    ("MISSING", "no such file"),
])
def test_bad_hyperparameters_end_before_anything_starts(tmp_path, where, given, message):
    data = tmp_path / "chips"
    data.mkdir()
    root = tmp_path / "r2"
    given = str(tmp_path / "hp.json") if given == "MISSING" else given
    argv = [w.replace("DATA", str(data)) for w in where] + ["--init", "shipped", "--hyperparameters", given]
    if "--local" in where:
        argv += ["--root", str(root)]
    # In a fresh interpreter, to see that TensorFlow is never imported (-X importtime lists it).
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "looking_glass.cli.main", "train", *argv],
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], errors
    assert not re.search(r"\|\s+(tensorflow|keras)\b", proc.stderr)
    assert not root.exists() and list(data.iterdir()) == []


def _train(argv, timeout=120):
    """``looking-glass train ARGV`` in a fresh interpreter: (exit status, its lines on standard
    error, whether TensorFlow or Keras was imported: -X importtime lists every import)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "looking_glass.cli.main", "train", *argv],
                          capture_output=True, text=True, timeout=timeout)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    return proc.returncode, errors, bool(re.search(r"\|\s+(tensorflow|keras)\b", proc.stderr))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A real prepared dataset (synth-data's writer) with train chips."""
    from looking_glass.datasets.synthdata import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth") / "chips"
    assert write_synthetic_dataset(out, 4, seed=0)["counts"]["train"] > 0
    return out


@pytest.mark.parametrize("where", ["--local", "--stack"])
@pytest.mark.parametrize("init, given, message", [
    (True, '{"freeze_epochs": 5, "epochs": 2}', "hyperparameter 'freeze_epochs' (5) must be below 'epochs' (2)"),
    # A fine-tune's default epochs is 24: freeze_epochs 24 alone never trains the encoder.
    (True, '{"freeze_epochs": 24}', "hyperparameter 'freeze_epochs' (24) must be below 'epochs' (24)"),
    (True, '{"head": "sdt"}', "hyperparameter 'head' is 'sdt' but the init model's is 'binary'"),
    (False, '{"backbone": "xception", "alpha": 0.5}', "alpha applies to MobileNetV2 only"),
])
def test_bad_combinations_end_before_anything_is_staged(tmp_path, synthetic, where, init, given, message):
    # The user's {"freeze_epochs": 5, "epochs": 2} staged the init model and the data into --root,
    # then the job said "bad hyperparameters: ..." without the error: prefix.
    root = tmp_path / "root"
    argv = (["--local", "--data", str(synthetic), "--root", str(root)] if where == "--local"
            else ["--stack", "Nowhere", "--data", str(synthetic)])
    code, errors, tensorflow = _train(argv + (["--init", "shipped"] if init else []) + ["--hyperparameters", given])
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], errors
    assert not tensorflow and not root.exists()


@pytest.fixture(scope="module")
def all_validation(tmp_path_factory):
    """The sample image prepared with the README's --val-fraction 1.0: every chip in validation."""
    from looking_glass.cli.main import main

    out = tmp_path_factory.mktemp("val") / "chips"
    sample = Path(__file__).resolve().parents[2] / "data" / "spacenet_atlanta_sample"
    assert main(["prepare", "--images", str(sample / "image.tif"), "--footprints", str(sample / "buildings.geojson"),
                 "--out", str(out), "--val-fraction", "1.0"]) == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["train"] == 0 and counts["validation"] > 0
    return out


@pytest.mark.parametrize("where", ["--local", "--stack"])
def test_a_dataset_without_train_chips_ends_before_tensorflow_or_staging(tmp_path, all_validation, where):
    # It loaded TensorFlow, staged the init model, then said "training failed: ... has no train chips", exit 1.
    root = tmp_path / "root"
    argv = (["--local", "--data", str(all_validation), "--root", str(root)] if where == "--local"
            else ["--stack", "Nowhere", "--data", str(all_validation)])
    code, errors, tensorflow = _train(argv + ["--init", "shipped"])
    validation = json.loads((all_validation / "manifest.json").read_text())["counts"]["validation"]
    assert code == 2 and len(errors) == 1, errors
    assert errors[0] == (f"error: {all_validation}: no train chips, nothing to train on: all {validation} chips went to "
                         "validation (prepared with --val-fraction 1); prepare it again with a --val-fraction below 1 "
                         "(default 0.2) or from more images, so that some blocks of chips go to train")
    assert not tensorflow and not root.exists()


def test_a_hyperparameters_file_is_read_and_checked(tmp_path, capsys):
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({"epochs": 0}))
    code, _, err = run_cli(capsys, "train", "--local", "--data", str(tmp_path), "--hyperparameters", str(hp))
    assert code == 2 and "hyperparameter 'epochs': 0 is outside [1, inf]" in err
    hp.write_text('{"epochs": ')
    code, _, err = run_cli(capsys, "train", "--local", "--data", str(tmp_path), "--hyperparameters", str(hp))
    assert code == 2 and f"--hyperparameters {hp} is not JSON" in err
    code, _, err = run_cli(capsys, "train", "--local", "--data", str(tmp_path), "--hyperparameters", str(tmp_path))
    assert code == 2 and "not a file" in err


def test_check_values_and_the_job_agree():
    """The CLI's check and the job's parse use one table: the same message for a bad value, and
    the job's unknown-key error names the closest key too."""
    for raw in ({"epochs": "x"}, {"batch_size": 0}, {"augment": "maybe"}, {"epohcs": 2}):
        with pytest.raises(HyperparameterError) as cli_side:
            check_values(raw)
        with pytest.raises(HyperparameterError) as job_side:
            parse_hyperparameters(raw)
        assert str(cli_side.value) == str(job_side.value)
    check_values({"epochs": "3", "augment": "true", "model_id": None})  # SageMaker's strings, unset keys


def test_the_quiet_launcher_runs_a_module_with_its_arguments():
    """``train --local`` starts the training job through ``python -m looking_glass.cli.quiet``."""
    proc = subprocess.run([sys.executable, "-m", "looking_glass.cli.quiet", "looking_glass.training.entrypoint",
                           "--help-hyperparameters"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0].split()[:2] == ["name", "type"]
    assert "epochs" in proc.stdout

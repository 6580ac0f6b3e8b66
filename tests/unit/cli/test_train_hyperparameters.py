"""``train --hyperparameters`` is checked by the CLI before anything is staged, uploaded or
imported: a bad key or value, a missing file or text that is no JSON object is one ``error:``
line, exit status 2, nothing written (no --root folder), TensorFlow never loaded."""

from __future__ import annotations

import json
import re
import subprocess
import sys

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

"""benchmarks/inference_runtime_benchmark.py refuses bad arguments with one clear line (exit 2),
before it loads TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "inference_runtime_benchmark.py"


@pytest.mark.parametrize("args, says", [
    (["--tiles-per-run", "-1"], "--tiles-per-run must be 0 (the default) or more, got -1"),
    (["--configs", "shipped,resnet"], "--configs: unknown ['resnet']"),
    (["--configs", ","], "--configs: unknown empty list"),
])
def test_bad_arguments_are_refused(args, says):
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr

"""benchmarks/world_eval.py --thresholds: how the shipped model's threshold was chosen (its sidecar's
threshold_choice). Bad values are one clear line (exit 2); a real run reports IoU and area ratio per
threshold, the area falling as the threshold rises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "world_eval.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("value, says", [
    ("0.3,x", "not a comma-separated list of numbers: '0.3,x'"),
    ("0.4,1.5", "every threshold must lie strictly between 0 and 1: '0.4,1.5'"),
    ("0", "every threshold must lie strictly between 0 and 1: '0'"),
])
def test_bad_thresholds_are_refused(value, says):
    done = _run("--thresholds", value)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr


def test_each_threshold_gets_its_iou_and_area_ratio():
    pytest.importorskip("keras")
    done = _run("--world", "demo", "--tiles", "6", "--seed", "3", "--thresholds", "0.2,0.5,0.8")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    rows = result["by_threshold"]
    assert list(rows) == ["0.2", "0.5", "0.8"]
    assert all(0 <= r["iou"] <= 1 for r in rows.values())
    assert rows["0.2"]["area_ratio"] >= rows["0.5"]["area_ratio"] >= rows["0.8"]["area_ratio"] > 0
    assert 0 < result["iou"] <= 1  # the plain figures, at the model's own threshold

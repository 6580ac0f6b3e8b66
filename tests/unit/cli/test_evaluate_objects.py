"""``looking-glass evaluate --data CHIPS``: object scores (SpaceNet rule) next to the pixel scores,
with the shipped model on chips of the real SpaceNet sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SPACENET_SAMPLE
from scipy import ndimage

from looking_glass.cli.main import main


def _prepare(tmp_path, mode: str) -> str:
    out = tmp_path / f"chips-{mode}"
    argv = ["prepare", "--images", str(SPACENET_SAMPLE / "image.tif"), "--footprints",
            str(SPACENET_SAMPLE / "buildings.geojson"), "--out", str(out), "--mode", mode, "--val-fraction", "1.0"]
    if mode == "tiles":
        argv += ["--max-nodata", "0.5"]
    assert main(argv) == 0
    return str(out)


def test_tiles_mode_chips_get_object_scores_next_to_pixel_scores(tmp_path, capsys):
    data = _prepare(tmp_path, "tiles")
    capsys.readouterr()
    assert main(["evaluate", "--data", data]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"iou", "precision", "recall", "tp"} <= set(out)
    assert out["object_iou_threshold"] == 0.5
    assert out["object_tp"] + out["object_fp"] == out["predicted_buildings"]
    assert out["object_tp"] + out["object_fn"] == out["truth_buildings"]
    assert out["object_f1"] == pytest.approx(2 * out["object_tp"] / (out["predicted_buildings"] + out["truth_buildings"]))
    # The truth count is that of the rasterised footprints, stitched across the chips: no more
    # than the chips' own connected regions (a building cut by a chip edge is one building).
    from looking_glass.datasets.chips import load_split

    masks = load_split(data, "validation")["mask"]
    regions = sum(ndimage.label(m)[1] for m in masks)
    assert 0 < out["truth_buildings"] <= regions


def test_native_chips_say_why_there_are_no_object_scores(tmp_path, capsys):
    data = _prepare(tmp_path, "native")
    capsys.readouterr()
    assert main(["evaluate", "--data", data]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "object_f1" not in out and "prepare --mode tiles" in out["object_scores"]
    assert np.isfinite(out["iou"])

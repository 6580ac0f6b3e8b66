"""The model shipped in the package finds buildings in the synthetic world's demo area.

It was trained (`looking-glass synth-data` + `looking-glass train --local`, commands in its
sidecar) on synthetic clusters away from the demo area, so these 16 tiles are unseen. Bounds are
set below what was measured when the model was shipped (model v5 on these tiles: IoU 0.906, total
area +2.5%, every tile within 6.2% (at its threshold 0.4; at 0.5: 0.908, -0.4%, 7.4%); v4 had 0.899, -2.7%, 11%; v3 had 0.850, -0.9%, 18%; v2 0.944, +1.0%, 4.1%), so that they catch a broken
or untrained model, not small numerical differences between machines.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from looking_glass.datasets.synthetic import render_tile  # noqa: E402
from looking_glass.model.segmenter import SHIPPED_MODEL, Segmenter, building_area_m2, load_metadata  # noqa: E402

Z = 18
DEMO_TILES = [(x, y) for x in range(152950, 152954) for y in range(132480, 132484)]
MIN_IOU = 0.8
# Total building area over the 16 tiles: measured +2.5% (v5), -2.7% (v4), -0.9% (v3). 10% is the accuracy the demo promises;
# it leaves room for numerical drift while an untrained model is off by ~100%.
AREA_TOLERANCE = 0.10


@pytest.fixture(scope="module")
def segmenter():
    assert SHIPPED_MODEL.exists(), f"{SHIPPED_MODEL} is missing"
    return Segmenter.load()


def test_metadata_says_trained(segmenter):
    meta = load_metadata(SHIPPED_MODEL)
    assert meta["trained"] is True
    assert segmenter.info.trained
    assert segmenter.info.model_id == meta["model_id"]
    assert 0.0 < segmenter.info.threshold < 1.0


def test_finds_buildings_in_demo_area(segmenter):
    tiles = [render_tile(Z, x, y) for x, y in DEMO_TILES]
    images = np.stack([t[0] for t in tiles])
    truth = np.stack([t[1] for t in tiles])

    pred = segmenter.predict_masks(images)
    assert pred.shape == truth.shape and pred.dtype == bool

    iou = (pred & truth).sum() / (pred | truth).sum()
    assert iou >= MIN_IOU, f"IoU {iou:.3f} < {MIN_IOU}"

    true_area = sum(building_area_m2(m, x, y, Z) for m, (x, y) in zip(truth, DEMO_TILES))
    pred_area = sum(building_area_m2(m, x, y, Z) for m, (x, y) in zip(pred, DEMO_TILES))
    rel = pred_area / true_area - 1
    assert abs(rel) <= AREA_TOLERANCE, f"area {pred_area:.0f} m2 vs true {true_area:.0f} m2 ({rel:+.1%})"

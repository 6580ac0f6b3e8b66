"""Object scores on whole tiles (outlines.evaluate.evaluate_tiles): stitched like the export, then
the SpaceNet rule; hand-made masks with hand-counted answers."""

from __future__ import annotations

import numpy as np
import pytest
from outlines_helpers import cut_tiles

from looking_glass.outlines.errors import OutlinesError
from looking_glass.outlines.evaluate import evaluate_tiles
from looking_glass.outlines.stitch import OutlineOptions


def _triples(pred_mosaic, truth_mosaic):
    pred, truth = cut_tiles(pred_mosaic), cut_tiles(truth_mosaic)
    return [(t, p, m) for (t, p), (_, m) in zip(pred, truth, strict=True)]


def _truth_mosaic():
    """2 x 2 tiles: three buildings, one of them across the vertical tile edge at column 256."""
    m = np.zeros((512, 512), bool)
    m[20:60, 20:80] = True  # inside tile (0, 0)
    m[100:140, 230:290] = True  # across the edge between tiles (0, 0) and (1, 0)
    m[300:360, 300:380] = True  # inside tile (1, 1)
    return m


def test_a_perfect_prediction_scores_one_and_a_building_across_tiles_counts_once():
    truth = _truth_mosaic()
    out = evaluate_tiles(_triples(truth.astype(np.float32), truth))
    assert (out["tp"], out["fp"], out["fn"]) == (3, 0, 0)
    assert out["truth"] == 3 and out["predicted"] == 3  # 3, not 4: the cut building is stitched
    assert out["f1"] == 1.0 and out["tiles"] == 4


def test_shifted_missing_and_extra_buildings_by_hand():
    truth = _truth_mosaic()
    pred = np.zeros_like(truth)
    pred[20:60, 20:80] = True  # exact: a true positive
    pred[100:140, 260:320] = True  # shifted by half its width: IoU 30/90 = 1/3 < 0.5 -> fp, fn
    pred[450:480, 20:60] = True  # nothing there: fp
    # the building in tile (1, 1) is missed: fn
    out = evaluate_tiles(_triples(pred, truth))
    assert (out["tp"], out["fp"], out["fn"]) == (1, 2, 2)
    assert out["precision"] == pytest.approx(1 / 3) and out["recall"] == pytest.approx(1 / 3)
    lenient = evaluate_tiles(_triples(pred, truth), iou=0.3)
    assert (lenient["tp"], lenient["fp"], lenient["fn"]) == (2, 1, 1)


def test_specks_under_the_minimum_area_are_not_buildings_on_either_side():
    truth = _truth_mosaic()
    truth[200:203, 10:13] = True  # 9 px, about 3 m2 at this latitude: below the export's 5 m2
    pred = _truth_mosaic()
    pred[400:403, 10:13] = True
    out = evaluate_tiles(_triples(pred, truth))
    assert (out["tp"], out["fp"], out["fn"]) == (3, 0, 0)
    keep = evaluate_tiles(_triples(pred, truth), options=OutlineOptions(min_area_m2=0.0))
    assert (keep["tp"], keep["fp"], keep["fn"]) == (3, 1, 1)


def test_a_tile_given_twice_is_scored_twice_in_separate_passes():
    truth = _truth_mosaic()
    triples = _triples(truth, truth)
    out = evaluate_tiles(triples + triples[:1])  # chips of two overlapping images share tile (0, 0)
    assert out["tiles"] == 5
    # Pass 1 has the whole mosaic (3 buildings); pass 2 tile (0, 0) alone: its building and the
    # west half of the cut one.
    assert (out["tp"], out["fp"], out["fn"]) == (5, 0, 0)


def test_the_sdt_head_is_outlined_by_its_own_rule():
    truth = _truth_mosaic()
    # A signed distance in metres-like units: positive inside, negative outside.
    from scipy import ndimage

    sdt = np.where(truth, ndimage.distance_transform_edt(truth), -ndimage.distance_transform_edt(~truth))
    out = evaluate_tiles(_triples(sdt.astype(np.float32), truth), options=OutlineOptions(head="sdt"))
    assert (out["tp"], out["fp"], out["fn"]) == (3, 0, 0)


@pytest.mark.parametrize("iou", [0.0, -0.1, 1.5])
def test_bad_threshold(iou):
    truth = _truth_mosaic()
    with pytest.raises(OutlinesError, match="IoU threshold"):
        evaluate_tiles(_triples(truth, truth), iou=iou)


def test_no_tiles_and_empty_tiles():
    assert evaluate_tiles([])["f1"] == 1.0
    empty = np.zeros((512, 512), bool)
    out = evaluate_tiles(_triples(_truth_mosaic(), empty))
    assert (out["tp"], out["fp"], out["fn"], out["precision"]) == (0, 3, 0, 0.0)

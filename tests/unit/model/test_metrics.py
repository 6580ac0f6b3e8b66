"""Losses and metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("keras")

from looking_glass.model import metrics as M  # noqa: E402

# One 2x3 tile (batch of 1).
TRUTH = np.array([[[1, 1, 0], [0, 1, 0]]], dtype=bool)
PROB = np.array([[[0.9, 0.4, 0.6], [0.2, 0.7, 0.5]]], dtype=np.float32)


def f(x) -> float:
    return float(np.asarray(x))


# --- binary metrics -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "threshold, expected",
    [
        # t=0.5: pred [[1,0,1],[0,1,1]] (0.5 >= 0.5 counts). tp = (0,0),(1,1) = 2;
        # fp = (0,2),(1,2) = 2; fn = (0,1) = 1. IoU 2/5, F1 4/7, precision 2/4, recall 2/3.
        (0.5, dict(iou=2 / 5, f1=4 / 7, precision=2 / 4, recall=2 / 3)),
        # t=0.65: pred [[1,0,0],[0,1,0]]. tp 2, fp 0, fn 1. IoU 2/3, F1 4/5, P 2/2, R 2/3.
        (0.65, dict(iou=2 / 3, f1=4 / 5, precision=1.0, recall=2 / 3)),
        # t=0.3: pred [[1,1,1],[0,1,1]]. tp 3, fp 2, fn 0. IoU 3/5, F1 6/8, P 3/5, R 3/3.
        (0.3, dict(iou=3 / 5, f1=6 / 8, precision=3 / 5, recall=1.0)),
    ],
)
def test_binary_scores_by_hand(threshold, expected):
    got = {
        "iou": f(M.jaccard(TRUTH, PROB, threshold=threshold)),
        "f1": f(M.f1(TRUTH, PROB, threshold=threshold)),
        "precision": f(M.precision(TRUTH, PROB, threshold=threshold)),
        "recall": f(M.recall(TRUTH, PROB, threshold=threshold)),
    }
    assert got == pytest.approx(expected, abs=1e-6)
    assert {k: f(v) for k, v in M.binary_scores(TRUTH, PROB, threshold).items()} == pytest.approx(expected, abs=1e-6)
    # numpy, dataset level: same counts, same scores
    counts = M.confusion_counts(PROB >= threshold, TRUTH)
    assert M.scores_from_counts(*counts) == pytest.approx(expected, abs=1e-12)


def test_shapes_with_and_without_channel_axis_agree():
    # model output (n, H, W, 1) against truth (n, H, W), and truth as 0/1 floats with a channel
    as_model_output = PROB[..., None]
    assert f(M.jaccard(TRUTH, as_model_output)) == pytest.approx(2 / 5)
    assert f(M.jaccard(TRUTH[..., None].astype(np.float32), as_model_output)) == pytest.approx(2 / 5)
    assert f(M.jaccard(TRUTH[..., None].astype(np.float32), PROB)) == pytest.approx(2 / 5)


def test_metrics_pool_the_batch():
    # Tile 1 is TRUTH/PROB (tp 2, fp 2, fn 1); tile 2: truth [[0,0,0],[0,0,1]], prob all 0.9
    # -> tp 1, fp 5, fn 0. Pooled: tp 3, fp 7, fn 1 -> IoU 3/11, F1 6/14, P 3/10, R 3/4.
    truth = np.concatenate([TRUTH, np.array([[[0, 0, 0], [0, 0, 1]]], dtype=bool)])
    prob = np.concatenate([PROB, np.full((1, 2, 3), 0.9, np.float32)])
    assert f(M.jaccard(truth, prob)) == pytest.approx(3 / 11)
    assert f(M.f1(truth, prob)) == pytest.approx(6 / 14)
    assert f(M.precision(truth, prob)) == pytest.approx(3 / 10)
    assert f(M.recall(truth, prob)) == pytest.approx(3 / 4)


EMPTY = np.zeros((1, 2, 2), dtype=bool)
SOME = np.array([[[1, 0], [0, 0]]], dtype=bool)


@pytest.mark.parametrize(
    "truth, pred, expected",
    [
        # Nothing to find, nothing found: every score is 1 (no error at all).
        (EMPTY, EMPTY, dict(iou=1.0, f1=1.0, precision=1.0, recall=1.0)),
        # Truth empty, one false alarm: tp 0, fp 1, fn 0. IoU 0/1, F1 0/1, precision 0/1,
        # recall 0/0 with an error -> 0.
        (EMPTY, SOME, dict(iou=0.0, f1=0.0, precision=0.0, recall=0.0)),
        # A building, nothing found: tp 0, fp 0, fn 1. IoU 0/1, F1 0/1, recall 0/1,
        # precision 0/0 with an error -> 0.
        (SOME, EMPTY, dict(iou=0.0, f1=0.0, precision=0.0, recall=0.0)),
        # Both the same non-empty mask: all 1.
        (SOME, SOME, dict(iou=1.0, f1=1.0, precision=1.0, recall=1.0)),
    ],
)
def test_empty_mask_conventions(truth, pred, expected):
    prob = pred.astype(np.float32)
    tensor = {k: f(v) for k, v in M.binary_scores(truth, prob).items()}
    assert tensor == expected
    assert M.scores_from_counts(*M.confusion_counts(pred, truth)) == expected
    sdt_truth = np.where(truth, 2.0, -2.0).astype(np.float32)  # metres: + inside buildings
    sdt_pred = np.where(pred, 1.0, -1.0).astype(np.float32)
    assert f(M.sdt_iou(sdt_truth, sdt_pred)) == expected["iou"]
    assert f(M.sdt_f1(sdt_truth, sdt_pred)) == expected["f1"]


# --- weighted binary cross-entropy --------------------------------------------------------------

Y = np.array([[1.0, 0.0]], dtype=np.float32)
P = np.array([[0.8, 0.4]], dtype=np.float32)


@pytest.mark.parametrize(
    "pos_weight, expected",
    [
        # pixel losses: -w log 0.8 = w * 0.2231436, -log 0.6 = 0.5108256; mean over 2 pixels
        (1.0, (0.2231436 + 0.5108256) / 2),  # 0.3669846
        (3.0, (3 * 0.2231436 + 0.5108256) / 2),  # 0.5900282
        (0.5, (0.5 * 0.2231436 + 0.5108256) / 2),  # 0.3111987
    ],
)
def test_weighted_bce_by_hand(pos_weight, expected):
    loss = np.asarray(M.weighted_binary_crossentropy(Y, P, pos_weight=pos_weight))
    assert loss.shape == (1,)  # one value per sample
    assert loss[0] == pytest.approx(expected, rel=1e-5)
    # from logits: logit(0.8) = ln 4, logit(0.4) = ln(2/3)
    logits = np.array([[math.log(4.0), math.log(2 / 3)]], dtype=np.float32)
    got = np.asarray(M.weighted_binary_crossentropy(Y, logits, pos_weight=pos_weight, from_logits=True))
    assert got[0] == pytest.approx(expected, rel=1e-5)
    assert f(M.weighted_bce(pos_weight)(Y, P)[0]) == pytest.approx(expected, rel=1e-5)


def test_weighted_bce_is_keras_bce_at_weight_one_and_per_sample():
    import keras

    rng = np.random.default_rng(0)
    y = (rng.uniform(size=(3, 4, 4, 1)) > 0.5).astype(np.float32)
    p = rng.uniform(0.05, 0.95, size=(3, 4, 4, 1)).astype(np.float32)
    ours = np.asarray(M.weighted_binary_crossentropy(y, p))
    assert ours.shape == (3,)
    reference = np.asarray(keras.losses.binary_crossentropy(y, p)).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(ours, reference, rtol=1e-4)


def test_weighted_bce_clips_certain_mistakes():
    # p = 0 for a building: -log(1e-7) = 16.118, finite
    loss = f(M.weighted_binary_crossentropy(np.array([[1.0]]), np.array([[0.0]]))[0])
    assert loss == pytest.approx(-math.log(1e-7), rel=1e-3)


# --- SDT head -----------------------------------------------------------------------------------

SDT_TRUTH = np.array([[[2.0, -1.0], [0.5, -3.0]]], dtype=np.float32)
SDT_PRED = np.array([[[1.0, 0.5], [-0.5, -1.0]]], dtype=np.float32)
# errors pred - truth: -1, 1.5, -1, 2


def test_sdt_losses_by_hand():
    # MSE: (1 + 2.25 + 1 + 4) / 4 = 2.0625 m^2
    assert f(M.sdt_mse(SDT_TRUTH, SDT_PRED)[0]) == pytest.approx(2.0625)
    # Huber, delta 1 m: |e| 1 -> 0.5; 1.5 -> 1 * (1.5 - 0.5) = 1; 1 -> 0.5; 2 -> 1.5. Mean 3.5/4.
    assert f(M.sdt_huber_loss(SDT_TRUTH, SDT_PRED)[0]) == pytest.approx(0.875)
    # Huber, delta 2 m: 0.5; 0.5*2.25 = 1.125; 0.5; 0.5*4 = 2 (|e| = delta is quadratic). 4.125/4.
    assert f(M.sdt_huber_loss(SDT_TRUTH, SDT_PRED, delta=2.0)[0]) == pytest.approx(1.03125)
    assert f(M.sdt_huber(2.0)(SDT_TRUTH, SDT_PRED[..., None])[0]) == pytest.approx(1.03125)
    # Huber with a large delta is half the MSE
    assert f(M.sdt_huber_loss(SDT_TRUTH, SDT_PRED, delta=10.0)[0]) == pytest.approx(2.0625 / 2)


def test_sdt_masks_by_hand():
    # truth > 0: (0,0), (1,0); pred > 0: (0,0), (0,1). tp 1, fp 1, fn 1 -> IoU 1/3, F1 2/4.
    assert f(M.sdt_iou(SDT_TRUTH, SDT_PRED)) == pytest.approx(1 / 3)
    assert f(M.sdt_f1(SDT_TRUTH, SDT_PRED)) == pytest.approx(1 / 2)
    # exactly 0 m is the boundary, not building: predicting 0 where truth is 2 is a miss.
    # truth > 0 at (0,0) only; pred > 0 nowhere -> tp 0, fp 0, fn 1 -> IoU 0.
    assert f(M.sdt_iou(np.array([[[2.0, -1.0]]]), np.array([[[0.0, 0.0]]]))) == 0.0


# --- numpy, dataset level -----------------------------------------------------------------------


def test_counts_accumulate_over_tiles():
    pred_a, truth_a = PROB >= 0.5, TRUTH  # tp 2, fp 2, fn 1 (see above)
    pred_b, truth_b = np.zeros((1, 2, 3), bool), np.zeros((1, 2, 3), bool)  # empty tile
    pred_c = np.array([[[1, 1, 0], [0, 0, 0]]], bool)
    truth_c = np.array([[[1, 0, 0], [1, 0, 0]]], bool)  # tp 1, fp 1, fn 1
    counts = [M.confusion_counts(p, t) for p, t in [(pred_a, truth_a), (pred_b, truth_b), (pred_c, truth_c)]]
    assert counts == [(2, 2, 1), (0, 0, 0), (1, 1, 1)]
    total = sum(counts, M.Counts())
    assert total == M.Counts(3, 3, 2) == sum(counts)
    # Dataset: tp 3, fp 3, fn 2 -> IoU 3/8, F1 6/11, P 3/6, R 3/5 ...
    assert total.scores() == pytest.approx(dict(iou=3 / 8, f1=6 / 11, precision=1 / 2, recall=3 / 5))
    # ... which is not the mean of per-tile IoUs (2/5 + 1 + 1/3) / 3
    per_tile = M.scores_from_counts(*np.array(counts).T)
    np.testing.assert_allclose(per_tile["iou"], [2 / 5, 1.0, 1 / 3])
    np.testing.assert_allclose(per_tile["recall"], [2 / 3, 1.0, 1 / 2])
    # the same as counting all tiles at once
    stacked = M.confusion_counts(np.concatenate([pred_a, pred_b, pred_c]), np.concatenate([truth_a, truth_b, truth_c]))
    assert stacked == total


def test_tensor_and_numpy_metrics_agree_on_random_masks():
    rng = np.random.default_rng(1)
    truth = rng.uniform(size=(4, 16, 16)) < 0.3
    prob = rng.uniform(size=(4, 16, 16, 1)).astype(np.float32)
    for threshold in (0.2, 0.5, 0.9):
        tensor = {k: f(v) for k, v in M.binary_scores(truth, prob, threshold).items()}
        numpy = M.scores_from_counts(*M.confusion_counts(prob[..., 0] >= threshold, truth))
        assert tensor == pytest.approx(numpy, abs=1e-6)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="boolean"):
        M.confusion_counts(PROB, TRUTH)  # probabilities must be thresholded first
    with pytest.raises(ValueError, match="shapes differ"):
        M.confusion_counts(TRUTH, TRUTH[:, :1])
    with pytest.raises(ValueError, match="non-negative"):
        M.scores_from_counts(1, -1, 0)


# --- in model.compile ---------------------------------------------------------------------------


def _tiny_model(activation):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation=activation)(inputs))


def test_binary_loss_and_metrics_in_compile():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 4, 4, 3)).astype(np.float32)
    y = (rng.uniform(size=(6, 4, 4, 1)) < 0.4).astype(np.float32)
    model = _tiny_model("sigmoid")
    model.compile(optimizer="sgd", loss=M.weighted_bce(2.0), metrics=M.binary_metrics(0.5))
    history = model.fit(x, y, batch_size=6, epochs=2, verbose=0)
    assert {"loss", "iou", "f1", "precision", "recall"} <= set(history.history)
    result = model.evaluate(x, y, batch_size=6, verbose=0, return_dict=True)
    prob = np.asarray(model.predict(x, verbose=0))
    assert result["iou"] == pytest.approx(f(M.jaccard(y, prob)), abs=1e-5)
    assert result["loss"] == pytest.approx(float(np.mean(M.weighted_binary_crossentropy(y, prob, 2.0))), rel=1e-4)


def test_sdt_loss_and_metrics_in_compile():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4, 4, 3)).astype(np.float32)
    y = rng.normal(scale=3.0, size=(6, 4, 4, 1)).astype(np.float32)
    model = _tiny_model(None)
    model.compile(optimizer="sgd", loss=M.sdt_huber(1.0), metrics=M.sdt_metrics())
    history = model.fit(x, y, batch_size=6, epochs=1, verbose=0)
    assert {"loss", "sdt_mse", "sdt_iou", "sdt_f1"} <= set(history.history)
    result = model.evaluate(x, y, batch_size=6, verbose=0, return_dict=True)
    pred = np.asarray(model.predict(x, verbose=0))
    assert result["sdt_iou"] == pytest.approx(f(M.sdt_iou(y, pred)), abs=1e-5)
    assert result["sdt_mse"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-4)

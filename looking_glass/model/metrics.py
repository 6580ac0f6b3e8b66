"""Losses and segmentation metrics for the binary and signed-distance (SDT) heads.

Two levels:

* Tensor functions written with ``keras.ops``: they take ``(y_true, y_pred)`` and work in
  ``model.compile`` and directly on numpy arrays (they return a backend tensor; ``float(...)``
  or ``np.asarray(...)`` it). ``y_true`` may be ``(n, H, W)`` or ``(n, H, W, 1)`` against a
  model output of ``(n, H, W, 1)``. Losses return one value per sample (the mean over its
  pixels), as Keras losses do; metrics return one score for the whole batch (counts pooled
  over all its pixels). For ``model.compile`` use the factories (:func:`weighted_bce`,
  :func:`binary_metrics`, :func:`sdt_huber`, :func:`sdt_metrics`), which bind the parameters
  and give the functions their metric names. Note that Keras averages a metric's per-batch
  values over an epoch; that is not the dataset-level score.
* numpy :func:`confusion_counts` and :func:`scores_from_counts` for dataset-level evaluation:
  accumulate counts over many tiles, then compute the scores once.

Conventions
-----------
Truth masks are booleans or 0/1 floats (a pixel is a building when ``truth >= 0.5``); the
binary head's prediction is a building where ``probability >= threshold`` (as
``looking_glass.model.segmenter``). For the SDT head (signed distance in metres, positive inside
buildings) both prediction and truth are buildings where ``value > 0``.

With tp, fp, fn the counts of true positive, false positive and false negative pixels::

    IoU (Jaccard) = tp / (tp + fp + fn)
    F1 (Dice)     = 2 tp / (2 tp + fp + fn)
    precision     = tp / (tp + fp)
    recall        = tp / (tp + fn)

Empty masks: a ratio whose denominator is 0 scores **1 when the prediction has no error**
(fp = fn = 0) **and 0 otherwise**. So:

=======================  ====  ===  =========  ======
truth / prediction       IoU   F1   precision  recall
=======================  ====  ===  =========  ======
both empty               1     1    1          1
truth empty, pred not    0     0    0          0
pred empty, truth not    0     0    0          0
=======================  ====  ===  =========  ======

(in the last two rows the defined ratios are 0 anyway: e.g. truth empty -> precision =
0 / fp; the undefined one, recall there and precision in the last row, follows the rule.)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from keras import ops

EPSILON = 1e-7


# --- helpers -------------------------------------------------------------------------------------


def _align(y_true, y_pred):
    """Float tensors of one shape: drops a trailing channel axis of 1 that only one of them has."""
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    t, p = len(y_true.shape), len(y_pred.shape)
    if p == t + 1 and y_pred.shape[-1] == 1:
        y_pred = ops.squeeze(y_pred, axis=-1)
    elif t == p + 1 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    return y_true, y_pred


def _per_sample_mean(x):
    """Mean over every axis but the first (one value per sample); a scalar stays a scalar."""
    if len(x.shape) <= 1:
        return x
    return ops.mean(x, axis=tuple(range(1, len(x.shape))))


def _counts(pred, truth):
    """(tp, fp, fn) of two boolean tensors, as float32 scalars (exact up to 2**24 pixels)."""
    pred = ops.cast(pred, "float32")
    truth = ops.cast(truth, "float32")
    tp = ops.sum(pred * truth)
    fp = ops.sum(pred * (1.0 - truth))
    fn = ops.sum((1.0 - pred) * truth)
    return tp, fp, fn


def _ratio(num, den, fp, fn):
    """num / den; where den is 0: 1 if there is no error (fp = fn = 0), else 0."""
    perfect = ops.logical_and(ops.equal(fp, 0.0), ops.equal(fn, 0.0))
    safe = ops.where(ops.greater(den, 0.0), den, ops.ones_like(den))
    return ops.where(ops.greater(den, 0.0), num / safe, ops.where(perfect, 1.0, 0.0))


def _scores(tp, fp, fn) -> dict:
    return {
        "iou": _ratio(tp, tp + fp + fn, fp, fn),
        "f1": _ratio(2.0 * tp, 2.0 * tp + fp + fn, fp, fn),
        "precision": _ratio(tp, tp + fp, fp, fn),
        "recall": _ratio(tp, tp + fn, fp, fn),
    }


def _binary_counts(y_true, y_pred, threshold):
    y_true, y_pred = _align(y_true, y_pred)
    return _counts(ops.greater_equal(y_pred, threshold), ops.greater_equal(y_true, 0.5))


def _sdt_counts(y_true, y_pred):
    y_true, y_pred = _align(y_true, y_pred)
    return _counts(ops.greater(y_pred, 0.0), ops.greater(y_true, 0.0))


# --- binary head: loss --------------------------------------------------------------------------


def weighted_binary_crossentropy(y_true, y_pred, pos_weight: float = 1.0, from_logits: bool = False):
    """Per-sample mean of ``-(w y log p + (1 - y) log(1 - p))``, ``w = pos_weight``.

    ``y_true`` in [0, 1] (soft labels allowed). Probabilities are clipped to
    [EPSILON, 1 - EPSILON]. The mean is over pixels (not over weights), so ``pos_weight=1``
    is the ordinary binary cross-entropy and ``pos_weight > 1`` penalises missed buildings
    more. With ``from_logits`` ``y_pred`` are logits (numerically stable form, as
    ``tf.nn.weighted_cross_entropy_with_logits``).
    """
    y_true, y_pred = _align(y_true, y_pred)
    if from_logits:
        # (1 - y) z + (1 + (w - 1) y) * log(1 + exp(-z)), with log(1 + exp(-z)) computed stably.
        log1p_exp = ops.log1p(ops.exp(-ops.abs(y_pred))) + ops.maximum(-y_pred, 0.0)
        loss = (1.0 - y_true) * y_pred + (1.0 + (pos_weight - 1.0) * y_true) * log1p_exp
    else:
        p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        loss = -(pos_weight * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
    return _per_sample_mean(loss)


def weighted_bce(pos_weight: float = 1.0, from_logits: bool = False):
    """Loss for ``model.compile``: :func:`weighted_binary_crossentropy` with fixed parameters."""

    def weighted_bce_loss(y_true, y_pred):
        return weighted_binary_crossentropy(y_true, y_pred, pos_weight=pos_weight, from_logits=from_logits)

    return weighted_bce_loss


# --- binary head: metrics -----------------------------------------------------------------------


def jaccard(y_true, y_pred, threshold: float = 0.5):
    """IoU of ``y_pred >= threshold`` against ``y_true >= 0.5`` over the whole batch."""
    return _scores(*_binary_counts(y_true, y_pred, threshold))["iou"]


iou = jaccard


def f1(y_true, y_pred, threshold: float = 0.5):
    """F1 (Dice) of ``y_pred >= threshold`` against ``y_true >= 0.5`` over the whole batch."""
    return _scores(*_binary_counts(y_true, y_pred, threshold))["f1"]


dice = f1


def precision(y_true, y_pred, threshold: float = 0.5):
    """Pixel precision tp / (tp + fp) of probabilities ``y_pred`` at ``threshold`` (Keras metric)."""
    return _scores(*_binary_counts(y_true, y_pred, threshold))["precision"]


def recall(y_true, y_pred, threshold: float = 0.5):
    """Pixel recall tp / (tp + fn) of probabilities ``y_pred`` at ``threshold`` (Keras metric)."""
    return _scores(*_binary_counts(y_true, y_pred, threshold))["recall"]


def binary_scores(y_true, y_pred, threshold: float = 0.5) -> dict:
    """All four scores at once: {"iou", "f1", "precision", "recall"} (tensors)."""
    return _scores(*_binary_counts(y_true, y_pred, threshold))


def binary_metrics(threshold: float = 0.5) -> list:
    """Metrics for ``model.compile`` of the binary head, named iou, f1, precision, recall."""

    def bind(fn, name):
        def metric(y_true, y_pred):
            return fn(y_true, y_pred, threshold=threshold)

        metric.__name__ = name
        return metric

    return [bind(jaccard, "iou"), bind(f1, "f1"), bind(precision, "precision"), bind(recall, "recall")]


# --- SDT head -----------------------------------------------------------------------------------


def sdt_mse(y_true, y_pred):
    """Per-sample mean squared error of the signed distance (m^2)."""
    y_true, y_pred = _align(y_true, y_pred)
    return _per_sample_mean(ops.square(y_pred - y_true))


def sdt_huber_loss(y_true, y_pred, delta: float = 1.0):
    """Per-sample mean Huber loss of the signed distance, ``delta`` in metres:
    ``0.5 e^2`` where ``|e| <= delta``, else ``delta (|e| - delta / 2)``."""
    y_true, y_pred = _align(y_true, y_pred)
    err = ops.abs(y_pred - y_true)
    quadratic = ops.minimum(err, delta)
    return _per_sample_mean(0.5 * ops.square(quadratic) + delta * (err - quadratic))


def sdt_huber(delta: float = 1.0):
    """Loss for ``model.compile``: :func:`sdt_huber_loss` with a fixed ``delta`` (metres)."""

    def loss(y_true, y_pred):
        return sdt_huber_loss(y_true, y_pred, delta=delta)

    loss.__name__ = "sdt_huber"
    return loss


def sdt_iou(y_true, y_pred):
    """IoU of ``y_pred > 0`` against ``y_true > 0`` over the whole batch."""
    return _scores(*_sdt_counts(y_true, y_pred))["iou"]


def sdt_f1(y_true, y_pred):
    """F1 (Dice) of ``y_pred > 0`` against ``y_true > 0`` over the whole batch."""
    return _scores(*_sdt_counts(y_true, y_pred))["f1"]


def sdt_metrics() -> list:
    """Metrics for ``model.compile`` of the SDT head: mse (m^2), iou, f1."""
    return [sdt_mse, sdt_iou, sdt_f1]


# --- numpy, dataset level -----------------------------------------------------------------------


class Counts(NamedTuple):
    """Pixel counts; ``+`` adds them (unlike a plain tuple), so ``sum(counts, Counts())`` works."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other):
        if not isinstance(other, tuple) or len(other) != 3:
            return NotImplemented
        return Counts(self.tp + other[0], self.fp + other[1], self.fn + other[2])

    def __radd__(self, other):
        if isinstance(other, int) and other == 0:  # sum() without a start value
            return self
        return self.__add__(other)

    def scores(self) -> dict:
        """Precision, recall, F1 and IoU of these counts (:func:`scores_from_counts`)."""
        return scores_from_counts(self.tp, self.fp, self.fn)


def confusion_counts(pred_bool, truth_bool) -> Counts:
    """(tp, fp, fn) pixel counts of two boolean arrays of the same shape (any number of tiles).

    Threshold first: ``confusion_counts(prob >= t, truth)``; non-boolean arrays are refused so
    that probabilities are never silently cast.
    """
    pred = np.asarray(pred_bool)
    truth = np.asarray(truth_bool)
    if pred.dtype != bool or truth.dtype != bool:
        raise ValueError(f"confusion_counts needs boolean arrays, got {pred.dtype} and {truth.dtype}")
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, truth {truth.shape}")
    tp = int(np.count_nonzero(pred & truth))
    return Counts(tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(truth)) - tp)


def scores_from_counts(tp, fp, fn) -> dict:
    """{"iou", "f1", "precision", "recall"} from pixel counts, with the module's empty-mask
    convention (0/0 -> 1 if fp = fn = 0, else 0). Scalars give floats; arrays of counts (one
    entry per tile, say) give arrays."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    if np.any(tp < 0) or np.any(fp < 0) or np.any(fn < 0):
        raise ValueError("counts must be non-negative")
    perfect = (fp == 0) & (fn == 0)

    def ratio(num, den):
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(perfect, 1.0, 0.0))
        return float(value) if value.ndim == 0 else value

    return {
        "iou": ratio(tp, tp + fp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
    }

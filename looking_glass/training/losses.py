"""The binary head's training losses, chosen by the ``loss`` hyperparameter.

``bce``       weighted binary cross-entropy (``pos_weight``), the default;
``bce_dice``  the same plus ``1 - soft Dice`` of each chip (Dice is insensitive to how few
              building pixels a chip has: what small, imbalanced data sets need);
``lovasz``    the Lovasz hinge (Berman, Rannen Triki and Blaschko, 2018): a convex surrogate of
              each chip's ``1 - IoU``, computed on the logits of the model's probabilities.

Every loss returns one value per chip (a Keras loss's shape) and works on tensors (``keras.ops``)
and numpy arrays alike. The SDT head always uses the Huber loss
(:func:`looking_glass.model.metrics.sdt_huber`).
"""

from __future__ import annotations

from keras import ops

from looking_glass.model.metrics import EPSILON, weighted_binary_crossentropy

SMOOTH = 1.0  # Dice smoothing: a chip without buildings predicted empty scores 1


def _flat(y_true, y_pred):
    """(y_true, y_pred) as float32 (batch, pixels)."""
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    n = y_pred.shape[0] if y_pred.shape[0] is not None else ops.shape(y_pred)[0]
    return ops.reshape(y_true, (n, -1)), ops.reshape(y_pred, (n, -1))


def soft_dice_loss(y_true, y_pred):
    """Per chip ``1 - (2 sum(p y) + 1) / (sum(p) + sum(y) + 1)``, probabilities ``p``."""
    t, p = _flat(y_true, y_pred)
    inter = ops.sum(p * t, axis=1)
    return 1.0 - (2.0 * inter + SMOOTH) / (ops.sum(p, axis=1) + ops.sum(t, axis=1) + SMOOTH)


def lovasz_hinge_loss(y_true, y_pred):
    """Per chip Lovasz hinge of the probabilities ``y_pred`` (turned into logits) against 0/1 truth.

    The hinge errors ``1 - logit * sign`` are sorted in decreasing order and weighted by the
    increments of the Jaccard loss along that order (the gradient of its Lovasz extension).
    """
    t, p = _flat(y_true, y_pred)
    t = ops.cast(ops.greater_equal(t, 0.5), "float32")
    p = ops.clip(p, EPSILON, 1.0 - EPSILON)
    logits = ops.log(p) - ops.log(1.0 - p)
    errors = 1.0 - logits * (2.0 * t - 1.0)
    pixels = errors.shape[1]
    errors_sorted, order = ops.top_k(errors, k=pixels, sorted=True)
    t_sorted = ops.take_along_axis(t, order, axis=1)
    positives = ops.sum(t_sorted, axis=1, keepdims=True)
    intersection = positives - ops.cumsum(t_sorted, axis=1)
    union = positives + ops.cumsum(1.0 - t_sorted, axis=1)
    jaccard = 1.0 - intersection / union
    weights = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)
    return ops.sum(ops.relu(errors_sorted) * ops.stop_gradient(weights), axis=1)


def binary_loss(name: str, pos_weight: float = 1.0):
    """The ``model.compile`` loss called ``name`` (``bce``, ``bce_dice`` or ``lovasz``)."""

    def bce(y_true, y_pred):
        return weighted_binary_crossentropy(y_true, y_pred, pos_weight=pos_weight)

    def bce_dice(y_true, y_pred):
        return weighted_binary_crossentropy(y_true, y_pred, pos_weight=pos_weight) + soft_dice_loss(y_true, y_pred)

    def lovasz(y_true, y_pred):
        return lovasz_hinge_loss(y_true, y_pred)

    losses = {"bce": bce, "bce_dice": bce_dice, "lovasz": lovasz}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(losses)}")
    return losses[name]

"""The training loop's parts: compiling, validating and the per-epoch line.

The Keras callbacks that drive a run are in :mod:`looking_glass.training.callbacks`.

Adam at ``learning_rate`` (constant, or per epoch after the frozen ones a cosine or linear decay,
``lr_schedule``); loss for the ``binary`` head: weighted binary cross-entropy (``pos_weight``),
plus soft Dice, or the Lovasz hinge (``loss``, :mod:`looking_glass.training.losses`); Huber
(``huber_delta`` metres) on the signed distance for the ``sdt`` head. During the first
``freeze_epochs`` epochs the encoder's layers are frozen (not trainable, their batch norms in
inference mode): only the ASPP, decoder and head learn.

After each epoch the model is run over the whole validation set and the scores are computed
once from the pixel counts accumulated over all of it (``confusion_counts`` /
``scores_from_counts``): dataset-level IoU, F1, precision and recall, not Keras' average of
per-batch values. A building is ``probability >= threshold`` (binary head) or ``distance > 0``
(SDT head). :func:`metric_line` is the stdout line the SageMaker metric definitions
(:data:`looking_glass.training.contract.METRIC_DEFINITIONS`) parse.
"""

from __future__ import annotations

import math

import numpy as np

# SageMaker metric definitions for the per-epoch line: one definition, which the stack's
# training job uses too (re-exported here beside metric_line, which prints what they parse).
from looking_glass.training.contract import METRIC_DEFINITIONS
from looking_glass.training.data import Chips

__all__ = ["METRIC_DEFINITIONS", "StopFlag", "compile_model", "epoch_learning_rate", "metric_line",
           "predict", "set_encoder_frozen", "validate"]

# Layers of the DeepLab V3+ head (looking_glass.model.deeplab): everything else is the encoder.
DECODER_PREFIXES = ("image", "scale", "aspp", "decoder", "low_level_align", "output_up", "building_prob",
                    "signed_distance_m")


def compile_model(model, hp: dict, frozen: bool = False):
    """Compile ``model`` with Adam (``learning_rate``) and the head's loss; sets every batch
    norm's momentum to ``bn_momentum`` if given; ``frozen``: the encoder is frozen first (else
    every layer is trainable)."""
    import keras

    from looking_glass.model.metrics import sdt_huber, weighted_bce
    from looking_glass.training.losses import binary_loss

    if hp["bn_momentum"] is not None:
        for layer in _flat_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = hp["bn_momentum"]
    set_encoder_frozen(model, frozen)
    if hp["config"].head == "binary":
        loss = weighted_bce(hp["pos_weight"]) if hp["loss"] == "bce" else binary_loss(hp["loss"], hp["pos_weight"])
    else:
        loss = sdt_huber(hp["huber_delta"])
    model.compile(optimizer=keras.optimizers.Adam(hp["learning_rate"]), loss=loss)  # XLA: GPU only ("auto")


def encoder_layers(model) -> list:
    """The encoder's (backbone's) layers of a DeepLab V3+ model: all but the ASPP, decoder and head."""
    return [layer for layer in _flat_layers(model) if not layer.name.startswith(DECODER_PREFIXES)]


def set_encoder_frozen(model, frozen: bool) -> None:
    """Freeze (``trainable = False``) the encoder's layers, or make every layer trainable.
    The model must be compiled afterwards."""
    # Each layer is set on its own: Keras 3's ``model.trainable = True`` does not make a layer
    # that was set ``trainable = False`` trainable again (so the encoder stayed frozen for the
    # whole fine-tune, and a model saved after a frozen warm-up kept a frozen encoder).
    model.trainable = True
    frozen_layers = {id(layer) for layer in encoder_layers(model)} if frozen else set()
    for layer in _flat_layers(model):
        layer.trainable = id(layer) not in frozen_layers


def epoch_learning_rate(hp: dict, epoch: int) -> float:
    """The learning rate of 0-based ``epoch``: ``learning_rate`` during the frozen epochs and with
    the constant schedule; else decaying from it (first unfrozen epoch) to ``min_lr_ratio`` of it
    (last epoch), along a half cosine or a line."""
    lr, schedule = hp["learning_rate"], hp["lr_schedule"]
    first, last = hp["freeze_epochs"], hp["epochs"] - 1
    if schedule == "constant" or epoch < first or last <= first:
        return lr
    t = min(1.0, (epoch - first) / (last - first))
    floor = hp["min_lr_ratio"]
    shape = 0.5 * (1.0 + math.cos(math.pi * t)) if schedule == "cosine" else 1.0 - t
    return lr * (floor + (1.0 - floor) * shape)


def _flat_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _flat_layers(layer)
        else:
            yield layer


def predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's output (N, S, S) float32 for images (N, S, S, 3), ``batch_size`` at a time."""
    out = [np.asarray(model.predict_on_batch(images[i:i + batch_size].astype(np.float32)))[..., 0]
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros(images.shape[:3], np.float32)


def validate(model, chips: Chips, hp: dict, stop) -> dict | None:
    """Dataset-level validation metrics: counts accumulated over every chip, scored once.

    ``val_loss`` (mean per chip), ``val_mse`` (SDT head, m^2), ``val_iou``, ``val_f1``,
    ``val_precision``, ``val_recall`` and ``val_counts`` (tp, fp, fn pixels). ``None`` if a
    signal arrives meanwhile (``stop.signum`` set).
    """
    from looking_glass.model.metrics import (
        Counts,
        confusion_counts,
        scores_from_counts,
        sdt_huber_loss,
        weighted_binary_crossentropy,
    )

    head, bs = hp["config"].head, hp["batch_size"]
    counts, loss_sum, sq_sum, n = Counts(), 0.0, 0.0, len(chips.images)
    for i in range(0, n, bs):
        if stop.signum:
            return None
        pred = np.asarray(model.predict_on_batch(chips.images[i:i + bs].astype(np.float32)))[..., 0]
        if head == "binary":
            truth = chips.targets[i:i + bs].astype(np.float32)
            loss = weighted_binary_crossentropy(truth, pred, pos_weight=hp["pos_weight"])
            counts += confusion_counts(pred >= hp["threshold"], truth >= 0.5)
        else:
            truth = chips.targets[i:i + bs]
            loss = sdt_huber_loss(truth, pred, delta=hp["huber_delta"])
            sq_sum += float(np.sum(np.mean(np.square(pred - truth), axis=(1, 2))))
            counts += confusion_counts(pred > 0, truth > 0)
        loss_sum += float(np.sum(np.asarray(loss)))
    scores = scores_from_counts(*counts)
    out = {"val_loss": loss_sum / n}
    if head == "sdt":
        out["val_mse"] = sq_sum / n
    out.update({f"val_{k}": float(v) for k, v in scores.items()})
    out["val_counts"] = {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn}
    return out


def metric_line(epoch: int, loss: float, val: dict | None, seconds: float) -> str:
    """The per-epoch stdout line (1-based epoch) that METRIC_DEFINITIONS parse."""
    parts = [f"epoch={epoch}", f"loss={loss:.6f}"]
    for key in ("val_loss", "val_mse", "val_iou", "val_f1", "val_precision", "val_recall"):
        if val and key in val:
            parts.append(f"{key}={val[key]:.6f}")
    parts.append(f"seconds={seconds:.1f}")
    return " ".join(parts)


class StopFlag:
    """Set by the SIGTERM/SIGINT handler; checked at batch ends."""

    def __init__(self):
        self.signum = 0

    def handler(self, signum, _frame):
        """A ``signal.signal`` handler: only records ``signum``."""
        self.signum = signum

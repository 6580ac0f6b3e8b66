"""SageMaker training entry point for the DeepLab V3+ building segmenter.

    python -m training.train [--root DIR]

The training image (``training/Dockerfile``) runs this as ``train``. ``--root`` defaults to the
environment variable ``LG_SM_ROOT``, else ``/opt/ml``; ``looking_glass.training.local.run_local``
lays out a local root the same way and runs this module in a subprocess.

Contract (the SageMaker training container layout, under the root)
------------------------------------------------------------------
``input/config/hyperparameters.json``
    A JSON object; SageMaker writes every value as a string (``"16"``, ``"true"``). JSON numbers
    and booleans are accepted as well, and so are JSON-encoded strings (``"\\"xception\\""``, as
    the SageMaker Python SDK sends them). Every value is validated and an error names the key;
    an unknown key is an error that lists the known ones. The table is :data:`HYPERPARAMETERS`
    (``python -m training.train --help-hyperparameters`` prints it). A missing file means all
    defaults.
``input/data/train`` (required), ``input/data/validation`` (optional)
    Each channel is either a prepared dataset (``manifest.json`` plus ``train/`` and
    ``validation/`` shard folders, see :mod:`looking_glass.datasets.prepare`), of which the ``train``
    channel uses the ``train`` split and the ``validation`` channel the ``validation`` split, or
    a folder holding ``shard-*.npz`` files directly. Both channels may point at the same dataset.
    Without a validation channel training still runs, with no validation metrics (it says so).
    Chips are held in memory (image uint8 and the head's target only).
``model/``
    ``model.keras`` (uncompiled) and its sidecar ``model.json`` in the format of
    :mod:`looking_glass.model.segmenter` (model_id, version, trained, description, threshold, config)
    plus a ``training`` record (hyperparameters, data, per-epoch metrics, elapsed time), so
    ``Segmenter.load("<root>/model/model.keras")`` works; ``export/`` (a TensorFlow SavedModel
    from Keras 3 ``model.export``, skipped with a warning if that fails); ``progress.gif``.
``checkpoints/``
    After every epoch: ``epoch-NNNN.keras`` (the full model), ``epoch-NNNN.optimizer.npz``
    (Adam's step count and moment estimates) and ``state.json`` (completed epochs, metric
    history, config, the files). SageMaker syncs this folder to S3 for spot training; a job
    that finds ``state.json`` at start resumes (see Resuming). ``panels/epoch-NNNN.png`` keeps
    each epoch's prediction panel so that the progress GIF covers resumed runs too.
``output/tensorboard``
    ``keras.callbacks.TensorBoard`` logs in ``train/`` and ``validation/`` (epoch loss and the
    validation metrics below, at 0-based epoch steps as Keras counts them) and
    ``predictions/``: per epoch, an image summary of up to 4 fixed validation chips (training
    chips if there is no validation set), each image | truth | prediction side by side.
    ``tf.summary.scalar``/``image`` (and so Keras' callback) need the ``tensorboard`` package,
    which TensorFlow 2.21 no longer depends on; without it the same events (same tags, plugin
    metadata and layout) are written with TensorFlow's own ``tf.summary.write``.
``output/data/progress.gif``
    A copy of the progress GIF (SageMaker uploads output/data as output.tar.gz).
``output/failure``
    On any error, the reason (first line) and, for unexpected errors, the traceback; the reason
    also goes to stderr. Exit code 2 for bad hyperparameters (including ``input_size`` not
    matching the chips), 1 for anything else.

Outside the container (``--root`` or ``LG_SM_ROOT`` given) every path is under the root. With
the default root the ``SM_*`` variables the Dockerfile sets (``SM_MODEL_DIR``,
``SM_CHANNEL_TRAIN``, ``SM_CHANNEL_VALIDATION``, ``SM_CHECKPOINT_DIR``, ``SM_INPUT_CONFIG_DIR``,
``SM_OUTPUT_DATA_DIR``) override the matching paths.

Training
--------
Adam at a constant ``learning_rate``; loss: weighted binary cross-entropy (``pos_weight``) for
the ``binary`` head, Huber (``huber_delta`` metres) on the signed distance for the ``sdt`` head.
Each epoch is ``floor(train chips / batch_size)`` batches (at least 1) of a fresh permutation;
the order and the augmentation (random 90-degree rotation and horizontal flip, the same for
image and target) are functions of (seed, epoch, batch), so a resumed run sees the batches an
uninterrupted one would have seen.

After each epoch the model is run over the whole validation set and the scores are computed
once from the pixel counts accumulated over all of it (``confusion_counts`` /
``scores_from_counts``): dataset-level IoU, F1, precision and recall, not Keras' average of
per-batch values. A building is ``probability >= threshold`` (binary head) or ``distance > 0``
(SDT head). One plain line per epoch goes to stdout, e.g.::

    epoch=3 loss=0.123400 val_loss=0.234500 val_iou=0.812300 val_f1=0.890100 val_precision=0.901000 val_recall=0.879500 seconds=41.2
    epoch=3 loss=0.512000 val_loss=0.800000 val_mse=3.120000 val_iou=0.700000 val_f1=0.820000 val_precision=... val_recall=... seconds=40.0   (SDT head)
    epoch=3 loss=0.123400 seconds=30.1   (no validation channel)

:data:`METRIC_DEFINITIONS` are the SageMaker metric definitions (name and regex) for these
lines: ``train:loss`` matches ``epoch=N loss=X`` (``loss=`` right after the epoch, so never
``val_loss``), ``validation:<name>`` matches ``val_<name>=X``, ``epoch`` the epoch number.
Values are printed as fixed-point decimals, which ``[0-9.]+`` matches (a NaN loss, printed
``nan``, is simply not reported).

Resuming (spot training)
------------------------
With ``checkpoints/state.json`` present, the job loads the checkpointed model (architecture,
weights and batch-norm statistics), restores Adam's state (iteration count, first and second
moments; the learning rate comes from the current hyperparameters) and continues at
``initial_epoch`` = completed epochs, keeping the metric history, the accumulated training time
and the per-epoch panels. The model hyperparameters must match the checkpoint's (else an error
says so); others (epochs, learning rate, ...) may change. Not restored: the state of Python's,
NumPy's and TensorFlow's global random generators (the data order and augmentation do not
depend on them) and TensorBoard's writers (new event files are appended to the same folder).
If the checkpoint already has ``epochs`` epochs, nothing is trained and the model is saved.

SIGTERM (spot interruption, ``docker stop``) and SIGINT
-------------------------------------------------------
The handler only sets a flag. A callback checks it at every batch end and stops training; a
checkpoint of the current weights is saved (as ``interrupted-epoch-NNNN``: ``state.json`` keeps
the completed epoch count, so the interrupted epoch is re-run from its start, on top of its
partial updates), a line says so, and the process exits with 128 + the signal number (143 for
SIGTERM) and no failure file: a reclaim is not an algorithm failure. A signal during validation
skips the rest of it (that epoch has no validation metrics); a signal before training started
exits at once. SageMaker allows 120 s between SIGTERM and SIGKILL; the wait is one batch plus
one model save.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

# SageMaker metric definitions for the per-epoch line (see the module docstring): one
# definition, which the stack's training job uses too.
from looking_glass.training.contract import METRIC_DEFINITIONS
from looking_glass.training.augment import augment_batch

DEFAULT_ROOT = "/opt/ml"
EXIT_FAILURE = 1
EXIT_BAD_HYPERPARAMETERS = 2
PANEL_CHIPS = 4
GIF_FRAME_MS = 600
SDT_DISPLAY_M = 5.0  # signed distances are shown as grey 127.5 * (1 + tanh(d / this))


class HyperparameterError(ValueError):
    """A bad hyperparameter (exit code 2)."""


class TrainingError(RuntimeError):
    """A problem with the inputs (channels, checkpoints) that is not a bug (exit code 1)."""


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived before training started."""


# --------------------------------------------------------------------------------------------
# Hyperparameters


def _unquote(value):
    """A JSON-encoded string (as the SageMaker Python SDK sends them) -> the string."""
    if isinstance(value, str):
        s = value.strip()
        if len(s) >= 2 and s[0] == s[-1] == '"':
            try:
                decoded = json.loads(s)
            except ValueError:
                return s
            return decoded
        return s
    return value


def _as_int(key, value, lo=None, hi=None):
    value = _unquote(value)
    if isinstance(value, bool):
        raise HyperparameterError(f"hyperparameter {key!r}: expected an integer, got {value!r}")
    try:
        if isinstance(value, str):
            number = float(value) if any(c in value for c in ".eE") else int(value)
        else:
            number = value
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError
            number = int(number)
        if not isinstance(number, int):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise HyperparameterError(f"hyperparameter {key!r}: expected an integer, got {value!r}") from None
    _check_range(key, number, lo, hi)
    return number


def _as_float(key, value, lo=None, hi=None, lo_open=False, hi_open=False):
    value = _unquote(value)
    if isinstance(value, bool):
        raise HyperparameterError(f"hyperparameter {key!r}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HyperparameterError(f"hyperparameter {key!r}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise HyperparameterError(f"hyperparameter {key!r}: expected a finite number, got {value!r}")
    _check_range(key, number, lo, hi, lo_open, hi_open)
    return number


def _check_range(key, number, lo, hi, lo_open=False, hi_open=False):
    too_low = lo is not None and (number <= lo if lo_open else number < lo)
    too_high = hi is not None and (number >= hi if hi_open else number > hi)
    if too_low or too_high:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise HyperparameterError(f"hyperparameter {key!r}: {number!r} is outside {span}")


def _as_bool(key, value):
    value = _unquote(value)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise HyperparameterError(f"hyperparameter {key!r}: expected true or false, got {value!r}")


def _as_choice(choices, cast=str):
    def parse(key, value):
        value = _unquote(value)
        try:
            picked = cast(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            picked = None
        if isinstance(picked, str):
            picked = picked.strip().lower()
        if picked not in choices:
            raise HyperparameterError(f"hyperparameter {key!r}: {value!r} is not one of {list(choices)}")
        return picked

    return parse


def _as_str(key, value):
    value = _unquote(value)
    if not isinstance(value, str) or not value.strip():
        raise HyperparameterError(f"hyperparameter {key!r}: expected a non-empty string, got {value!r}")
    return value.strip()


@dataclass(frozen=True)
class Spec:
    parse: object  # (key, raw value) -> value
    default: object  # None: optional, unset
    kind: str
    meaning: str


def _int(lo=None, hi=None):
    return lambda k, v: _as_int(k, v, lo, hi)


def _float(lo=None, hi=None, lo_open=False, hi_open=False):
    return lambda k, v: _as_float(k, v, lo, hi, lo_open, hi_open)


# The keys the job accepts. Model fields are passed to looking_glass.model.deeplab.ModelConfig, which
# validates their combination (e.g. alpha for Xception, input_size for the backbone).
HYPERPARAMETERS: dict[str, Spec] = {
    "epochs": Spec(_int(1), 10, "int >= 1", "epochs to train (in total, counting resumed ones)"),
    "batch_size": Spec(_int(1, 512), 16, "int 1..512", "chips per batch; an epoch is floor(chips / batch_size) batches"),
    "learning_rate": Spec(_float(0, lo_open=True), 1e-3, "float > 0", "Adam learning rate (constant)"),
    "backbone": Spec(_as_choice(("mobilenetv2", "xception")), "mobilenetv2", "mobilenetv2|xception", "encoder backbone"),
    "alpha": Spec(_float(0, lo_open=True), 1.0, "float", "MobileNetV2 width (0.35, 0.5, 0.75, 1.0, 1.3, 1.4; 1.0 for Xception)"),
    "output_stride": Spec(_as_choice((8, 16), int), 16, "8|16", "encoder output stride (8: dilated backbone)"),
    "head": Spec(_as_choice(("binary", "sdt")), "binary", "binary|sdt", "building probability or signed distance (m)"),
    "aspp_filters": Spec(_int(1), 256, "int >= 1", "ASPP channels"),
    "decoder_filters": Spec(_int(1), 256, "int >= 1", "decoder channels"),
    "low_level_filters": Spec(_int(1), 48, "int >= 1", "decoder's stride-4 skip projection channels"),
    "input_size": Spec(_int(32), 256, "int, multiple of 32", "model input size; must equal the chips' size"),
    "imagenet": Spec(_as_bool, False, "bool", "start from ImageNet backbone weights (random if they cannot be fetched)"),
    "pos_weight": Spec(_float(0, lo_open=True), 1.0, "float > 0", "binary head: weight of building pixels in the BCE"),
    "huber_delta": Spec(_float(0, lo_open=True), 1.0, "float > 0", "SDT head: Huber loss delta (m)"),
    "threshold": Spec(_float(0, 1), 0.5, "float 0..1", "binary head: building where probability >= threshold (metrics, sidecar)"),
    "augment": Spec(_as_bool, True, "bool", "random horizontal flips and 90-degree rotations"),
    "seed": Spec(_int(0, 2**32 - 1), 0, "int >= 0", "weights initialisation, data order and augmentation"),
    "bn_momentum": Spec(_float(0, 1, True, True), None, "float in (0, 1), optional",
                        "set every batch norm's momentum (Keras' defaults are 0.99-0.999: slow for short runs)"),
    "max_train_chips": Spec(_int(1), None, "int >= 1, optional", "use a seeded random subset of this many train chips"),
    "model_id": Spec(_as_str, None, "string, optional", "sidecar model_id (default from the config, e.g. deeplabv3plus-mobilenetv2a100-binary)"),
    "version": Spec(_as_str, None, "string, optional", "sidecar version (default: TRAINING_JOB_NAME, else a UTC timestamp)"),
    "description": Spec(_as_str, None, "string, optional", "sidecar description (default generated)"),
}
MODEL_KEYS = ("backbone", "alpha", "aspp_filters", "decoder_filters", "head", "input_size", "imagenet",
              "output_stride", "low_level_filters")


def hyperparameter_table() -> str:
    rows = [("name", "type", "default", "meaning")]
    rows += [(k, s.kind, "-" if s.default is None else str(s.default), s.meaning) for k, s in HYPERPARAMETERS.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows)


def parse_hyperparameters(raw: dict) -> dict:
    """Validated hyperparameters (defaults filled in) from SageMaker's string-valued dict.

    Raises :class:`HyperparameterError` naming the key. Also returns ``config``, the
    ``ModelConfig`` of the model fields.
    """
    from looking_glass.model.deeplab import ModelConfig

    if not isinstance(raw, dict):
        raise HyperparameterError(f"hyperparameters must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(HYPERPARAMETERS))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter(s) {unknown}; known: {sorted(HYPERPARAMETERS)}"
        )
    hp = {}
    for key, spec in HYPERPARAMETERS.items():
        hp[key] = spec.parse(key, raw[key]) if key in raw and raw[key] is not None else spec.default
    try:
        config = ModelConfig(**{k: hp[k] for k in MODEL_KEYS})
    except ValueError as e:
        raise HyperparameterError(f"model hyperparameters: {e}") from None
    hp["config"] = config
    if hp["model_id"] is None:
        hp["model_id"] = default_model_id(config)
    return hp


def default_model_id(cfg) -> str:
    width = f"a{round(cfg.alpha * 100):03d}" if cfg.backbone == "mobilenetv2" else ""
    suffix = f"-os{cfg.output_stride}" if cfg.output_stride != 16 else ""
    return f"deeplabv3plus-{cfg.backbone}{width}-{cfg.head}{suffix}"


def public_hyperparameters(hp: dict) -> dict:
    """The hyperparameters as JSON-able values (for the sidecar and checkpoints)."""
    return {k: v for k, v in hp.items() if k != "config"}


def read_hyperparameters(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text() or "{}")
    except ValueError as e:
        raise HyperparameterError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise HyperparameterError(f"{path}: must hold a JSON object, got {type(raw).__name__}")
    return raw


# --------------------------------------------------------------------------------------------
# Paths and channels


@dataclass(frozen=True)
class Paths:
    root: Path
    hyperparameters: Path
    train: Path
    validation: Path
    model: Path
    checkpoints: Path
    tensorboard: Path
    output_data: Path
    failure: Path

    @classmethod
    def resolve(cls, root: str | None, environ=os.environ) -> "Paths":
        """Paths under ``root``; with no root given, ``LG_SM_ROOT`` or /opt/ml, where the
        Dockerfile's SM_* variables override single paths."""
        explicit = root or environ.get("LG_SM_ROOT")
        base = Path(explicit or DEFAULT_ROOT)
        env = {} if explicit else environ

        def pick(var, default):
            return Path(env[var]) if env.get(var) else default

        config = pick("SM_INPUT_CONFIG_DIR", base / "input" / "config")
        return cls(
            root=base,
            hyperparameters=config / "hyperparameters.json",
            train=pick("SM_CHANNEL_TRAIN", base / "input" / "data" / "train"),
            validation=pick("SM_CHANNEL_VALIDATION", base / "input" / "data" / "validation"),
            model=pick("SM_MODEL_DIR", base / "model"),
            checkpoints=pick("SM_CHECKPOINT_DIR", base / "checkpoints"),
            tensorboard=base / "output" / "tensorboard",
            output_data=pick("SM_OUTPUT_DATA_DIR", base / "output" / "data"),
            failure=base / "output" / "failure",
        )


@dataclass
class Source:
    """Where a channel's chips come from."""

    channel: str
    path: Path
    kind: str  # "dataset" (manifest.json) or "shards"
    shards: list[Path]
    manifest: dict | None = None

    def summary(self) -> dict:
        out = {"channel": self.channel, "path": str(self.path), "kind": self.kind, "shards": len(self.shards)}
        if self.manifest is not None:
            m = self.manifest
            out["manifest"] = {k: m.get(k) for k in ("format", "format_version", "created", "mode", "chip_size",
                                                     "counts", "class_balance", "split_rule", "seed")
                               if k in m}
        return out


def resolve_channel(path: Path, channel: str, split: str, required: bool) -> Source | None:
    """The shards of one channel: a prepared dataset's ``split`` or shard files directly."""
    if not path.exists():
        if required:
            raise TrainingError(f"the {channel} channel {path} does not exist (it is required)")
        return None
    if not path.is_dir():
        raise TrainingError(f"the {channel} channel {path} is not a directory")
    manifest_path = path / "manifest.json"
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as e:
            raise TrainingError(f"{manifest_path}: not valid JSON: {e}") from None
        return Source(channel, path, "dataset", sorted((path / split).glob("shard-*.npz")), manifest)
    shards = sorted(path.glob("shard-*.npz"))
    if shards:
        return Source(channel, path, "shards", shards)
    if not required and not any(path.iterdir()):
        return None  # an empty channel folder: as if not given
    listing = sorted(p.name for p in path.iterdir())[:10]
    raise TrainingError(
        f"the {channel} channel {path} holds neither manifest.json (a prepared dataset) nor shard-*.npz files "
        f"(it holds {listing})"
    )


@dataclass
class Chips:
    images: np.ndarray  # (N, S, S, 3) uint8
    targets: np.ndarray  # (N, S, S) uint8 mask (binary head) or float32 signed distance (sdt head)
    ids: np.ndarray
    source: Source
    total: int = 0  # chips in the source before max_train_chips

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def summary(self) -> dict:
        return {"chips": int(len(self.images)), "available": int(self.total), "chip_size": self.size,
                **self.source.summary()}


def load_chips(src: Source, head: str, limit: int | None = None, seed: int = 0) -> Chips:
    """All chips of ``src`` in memory: images and the target for ``head``."""
    key = "mask" if head == "binary" else "sdt"
    images, targets, ids = [], [], []
    for f in src.shards:
        try:
            with np.load(f) as z:
                images.append(z["image"])
                targets.append(z[key])
                n = len(z["image"])
                ids.append(z["chip_ids"] if "chip_ids" in z else np.array([f"{f.stem}:{i}" for i in range(n)]))
        except (OSError, ValueError, KeyError) as e:
            raise TrainingError(f"{f}: not a readable chip shard ({type(e).__name__}: {e})") from None
    if not images:
        return Chips(np.zeros((0, 0, 0, 3), np.uint8), np.zeros((0, 0, 0)), np.array([], str), src, 0)
    image, target, chip_ids = np.concatenate(images), np.concatenate(targets), np.concatenate(ids)
    if image.ndim != 4 or image.shape[-1] != 3 or image.shape[1] != image.shape[2] or target.shape != image.shape[:3]:
        raise TrainingError(f"{src.channel} chips have unexpected shapes: image {image.shape}, {key} {target.shape}")
    total = len(image)
    if limit is not None and limit < total:
        keep = np.sort(np.random.default_rng([seed, 1]).choice(total, size=limit, replace=False))
        image, target, chip_ids = image[keep], target[keep], chip_ids[keep]
    return Chips(image, target, chip_ids, src, total)


def check_chip_size(chips: Chips, input_size: int) -> None:
    if len(chips.images) and chips.size != input_size:
        raise HyperparameterError(
            f"hyperparameter 'input_size' is {input_size} but the {chips.source.channel} chips are "
            f"{chips.size} px; set input_size to {chips.size}"
        )


# --------------------------------------------------------------------------------------------
# Data pipeline


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


def epoch_batch(chips: Chips, hp: dict, epoch: int, batch: int):
    """Batch ``batch`` of ``epoch``: a pure function of (seed, epoch, batch)."""
    n, bs = len(chips.images), min(hp["batch_size"], len(chips.images))
    order = np.random.default_rng([hp["seed"], epoch]).permutation(n)
    idx = np.sort(order[batch * bs:(batch + 1) * bs])
    images, targets = chips.images[idx], chips.targets[idx]
    if hp["augment"]:
        images, targets = augment_batch(images, targets, np.random.default_rng([hp["seed"], epoch, batch, 7]))
    return images.astype(np.float32), targets.astype(np.float32)[..., None]


def make_dataset(chips: Chips, hp: dict, initial_epoch: int):
    """An endless keras PyDataset; item i is batch i % steps of epoch initial_epoch + i // steps
    (Keras draws items in order when steps_per_epoch is given)."""
    import keras

    steps = steps_per_epoch(len(chips.images), hp["batch_size"])

    class ChipBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)

        @property
        def num_batches(self):
            return None  # endless: fit(steps_per_epoch=...) cuts it into epochs

        def __getitem__(self, i):
            epoch, batch = divmod(int(i), steps)
            return epoch_batch(chips, hp, initial_epoch + epoch, batch)

    return ChipBatches(), steps


# --------------------------------------------------------------------------------------------
# Model, loss, validation


def compile_model(model, hp: dict):
    import keras

    from looking_glass.model.metrics import sdt_huber, weighted_bce

    if hp["bn_momentum"] is not None:
        for layer in _flat_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = hp["bn_momentum"]
    loss = weighted_bce(hp["pos_weight"]) if hp["config"].head == "binary" else sdt_huber(hp["huber_delta"])
    model.compile(optimizer=keras.optimizers.Adam(hp["learning_rate"]), loss=loss)  # XLA: GPU only ("auto")


def _flat_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _flat_layers(layer)
        else:
            yield layer


def predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    out = [np.asarray(model.predict_on_batch(images[i:i + batch_size].astype(np.float32)))[..., 0]
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros(images.shape[:3], np.float32)


def validate(model, chips: Chips, hp: dict, stop) -> dict | None:
    """Dataset-level validation metrics: counts accumulated over every chip, scored once.
    ``None`` if a signal arrives meanwhile."""
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


# --------------------------------------------------------------------------------------------
# Prediction panels and the progress GIF


def _grey(values: np.ndarray, head: str) -> np.ndarray:
    if head == "binary":
        g = np.clip(values, 0.0, 1.0) * 255.0
    else:
        g = 127.5 * (1.0 + np.tanh(values / SDT_DISPLAY_M))
    return np.repeat(np.rint(g).astype(np.uint8)[..., None], 3, axis=-1)


def panel_rows(images: np.ndarray, truths: np.ndarray, preds: np.ndarray, head: str) -> np.ndarray:
    """(k, S, 3S, 3) uint8: image | truth | prediction for each chip."""
    truth_values = truths.astype(np.float32)
    return np.concatenate([images, _grey(truth_values, head), _grey(preds, head)], axis=2)


def panel_frame(rows: np.ndarray, epoch: int):
    """A PIL image of the rows stacked, headed 'epoch N'."""
    from PIL import Image, ImageDraw

    body = np.concatenate(list(rows), axis=0)
    header = 14
    frame = Image.new("RGB", (body.shape[1], body.shape[0] + header), "white")
    frame.paste(Image.fromarray(body), (0, header))
    ImageDraw.Draw(frame).text((3, 1), f"epoch {epoch}  (image | truth | prediction)", fill="black")
    return frame


def write_gif(frames_dir: Path, targets: list[Path]) -> list[Path]:
    from PIL import Image

    files = sorted(frames_dir.glob("epoch-*.png"))
    if not files:
        return []
    frames = [Image.open(f).convert("RGB") for f in files]
    written = []
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            frames[0].save(target, save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS, loop=0)
            written.append(target)
        except OSError as e:
            log(f"warning: could not write {target}: {e}")
    return written


# --------------------------------------------------------------------------------------------
# Checkpoints


def read_state(paths: Paths) -> dict | None:
    path = paths.checkpoints / "state.json"
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        (paths.checkpoints / state["model"]).stat()
    except (ValueError, KeyError, OSError) as e:
        raise TrainingError(
            f"checkpoint {path} is unreadable or incomplete ({e}); remove {paths.checkpoints} to start over"
        ) from None
    return state


def save_checkpoint(model, paths: Paths, state: dict, name: str) -> None:
    """``name``.keras + ``name``.optimizer.npz, then state.json (atomically), then older files go."""
    import keras

    ckpt = paths.checkpoints
    ckpt.mkdir(parents=True, exist_ok=True)
    plain = keras.Model(model.input, model.output, name=model.name)  # uncompiled: no custom loss needed to load
    plain.save(ckpt / f"{name}.keras")
    opt = {f"{i:05d}|{v.path.split('/', 1)[-1]}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)}
    np.savez(ckpt / f"{name}.optimizer.npz", **opt)
    state = {**state, "model": f"{name}.keras", "optimizer": f"{name}.optimizer.npz",
             "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = ckpt / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, ckpt / "state.json")
    for old in ckpt.iterdir():
        if old.is_file() and old.name not in (state["model"], state["optimizer"], "state.json") and (
            old.name.endswith(".keras") or old.name.endswith(".optimizer.npz")
        ):
            old.unlink()


def restore_optimizer(model, path: Path) -> str:
    """Load Adam's variables saved by save_checkpoint (learning rate excepted). Returns a note."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    with np.load(path) as z:
        saved = {k.split("|", 1)[1]: z[k] for k in sorted(z.files)}
    current = {v.path.split("/", 1)[-1]: v for v in optimizer.variables}
    if set(saved) != set(current) or any(tuple(saved[k].shape) != tuple(current[k].shape) for k in saved):
        return "optimizer state not restored (its variables differ from this model's); Adam starts afresh"
    for key, var in current.items():
        if key != "learning_rate":
            var.assign(saved[key])
    return f"optimizer state restored (iteration {int(saved.get('iteration', 0))})"


# --------------------------------------------------------------------------------------------
# TensorBoard events. keras.callbacks.TensorBoard and tf.summary.scalar/image need the
# tensorboard package, which TensorFlow 2.21 no longer installs; without it the same events are
# written with TensorFlow's own tf.summary.write and the plugins' metadata.


def tensorboard_installed() -> bool:
    try:
        from tensorboard.summary import v2  # noqa: F401
    except ImportError:
        return False
    return True


def _plugin_metadata(plugin: str):
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin  # "scalars" / "images"; empty content = version 0
    return meta


_WRITERS: dict = {}


def _writer(path: Path):
    import tensorflow as tf

    key = str(path)
    if key not in _WRITERS:
        _WRITERS[key] = tf.summary.create_file_writer(key)
    return _WRITERS[key]


def write_epoch_scalars(log_dir: Path, epoch: int, logs: dict) -> None:
    """epoch_<name> scalars, val_* under validation/ and the rest under train/ (as Keras does)."""
    import tensorflow as tf

    for split, items in (("train", {k: v for k, v in logs.items() if not k.startswith("val_")}),
                         ("validation", {k[4:]: v for k, v in logs.items() if k.startswith("val_")})):
        writer = _writer(log_dir / split)
        with writer.as_default():
            for name, value in items.items():
                if isinstance(value, (int, float, np.floating, np.integer)):
                    tf.summary.write(f"epoch_{name}", tf.constant(float(value), tf.float32), step=epoch,
                                     metadata=_plugin_metadata("scalars"))
        writer.flush()


def write_image_summary(log_dir: Path, tag: str, images: np.ndarray, step: int) -> None:
    """An image summary (up to len(images) images, uint8 (k, H, W, 3)) in the images plugin's
    format: a string tensor [width, height, png, png, ...]."""
    import tensorflow as tf

    pngs = [tf.io.encode_png(img) for img in images]
    h, w = images.shape[1:3]
    tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h)), *pngs])
    writer = _writer(log_dir)
    with writer.as_default():
        tf.summary.write(tag, tensor, step=step, metadata=_plugin_metadata("images"))
    writer.flush()


# --------------------------------------------------------------------------------------------
# Callbacks


class StopFlag:
    """Set by the SIGTERM/SIGINT handler; checked at batch ends."""

    def __init__(self):
        self.signum = 0

    def handler(self, signum, _frame):
        self.signum = signum


def make_callbacks(run: "Run"):
    import keras

    class StopOnSignal(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            run.batches_since_epoch += 1
            if run.stop.signum:
                self.model.stop_training = True

    class EpochEnd(keras.callbacks.Callback):
        """Validation, the metric line, prediction panels and the checkpoint of each epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            run.batches_since_epoch = 0
            run.epoch_started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if run.stop.signum and run.batches_since_epoch < run.steps:
                return  # an interrupted epoch: handled after fit
            run.finish_epoch(epoch, logs)

    def interrupted_epoch():
        return run.stop.signum and run.batches_since_epoch < run.steps

    if tensorboard_installed():

        class TensorBoard(keras.callbacks.TensorBoard):
            def on_epoch_end(self, epoch, logs=None):
                if not interrupted_epoch():
                    super().on_epoch_end(epoch, logs)

        tensorboard = TensorBoard(
            log_dir=str(run.paths.tensorboard), histogram_freq=0, write_graph=False, update_freq="epoch", profile_batch=0
        )
    else:
        log("the tensorboard package is not installed: epoch scalars are written with TensorFlow's raw summary ops "
            "(the layout of keras.callbacks.TensorBoard: train/ and validation/, epoch_<metric>)")

        class ScalarEvents(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if not interrupted_epoch():
                    write_epoch_scalars(run.paths.tensorboard, epoch, logs or {})

        tensorboard = ScalarEvents()
    return [StopOnSignal(), EpochEnd(), tensorboard]  # EpochEnd first: TensorBoard sees its val_* logs


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    paths: Paths
    hp: dict
    stop: StopFlag
    train: Chips
    val: Chips | None
    model: object = None
    steps: int = 0
    history: list = field(default_factory=list)
    completed: int = 0
    previous_seconds: float = 0.0
    resumes: list = field(default_factory=list)
    started: float = field(default_factory=time.time)
    epoch_started: float = 0.0
    batches_since_epoch: int = 0
    panel_chips: tuple | None = None

    # -- per epoch ----------------------------------------------------------------------------

    def finish_epoch(self, epoch: int, logs: dict | None) -> None:
        logs = logs if logs is not None else {}
        val = validate(self.model, self.val, self.hp, self.stop) if self.val is not None else None
        if val:
            logs.update({k: v for k, v in val.items() if k != "val_counts"})
        loss = float(logs.get("loss", float("nan")))
        seconds = time.time() - self.epoch_started
        log(metric_line(epoch + 1, loss, val, seconds))
        if self.val is not None and val is None:
            log(f"epoch {epoch + 1}: validation skipped (signal received)")
        record = {"epoch": epoch + 1, "loss": loss, "seconds": round(seconds, 2)}
        if val:
            record.update(val)
        self.history.append(record)
        self.completed = epoch + 1
        if not self.stop.signum:
            self.write_panels(epoch)
        self.checkpoint(f"epoch-{self.completed:04d}")
        if self.stop.signum:
            self.model.stop_training = True

    def state(self) -> dict:
        return {
            "completed_epochs": self.completed,
            "history": self.history,
            "config": self.hp["config"].to_dict(),
            "hyperparameters": public_hyperparameters(self.hp),
            "train_seconds": round(self.previous_seconds + time.time() - self.started, 1),
            "resumes": self.resumes,
        }

    def checkpoint(self, name: str) -> None:
        save_checkpoint(self.model, self.paths, self.state(), name)

    def write_panels(self, epoch: int) -> None:
        images, truths = self.panel_chips
        preds = predict(self.model, images, self.hp["batch_size"])
        rows = panel_rows(images, truths, preds, self.hp["config"].head)
        write_image_summary(self.paths.tensorboard / "predictions", "image_truth_prediction", rows, epoch)
        frames = self.paths.checkpoints / "panels"
        frames.mkdir(parents=True, exist_ok=True)
        panel_frame(rows, epoch + 1).save(frames / f"epoch-{epoch + 1:04d}.png")

    # -- setup --------------------------------------------------------------------------------

    def setup_model(self) -> None:
        import keras

        from looking_glass.model.deeplab import build_deeplabv3plus

        hp, cfg = self.hp, self.hp["config"]
        keras.utils.set_random_seed(hp["seed"])
        state = read_state(self.paths)
        if state is None:
            self.model = build_deeplabv3plus(cfg)
            compile_model(self.model, hp)
            log(f"model {self.model.name}: {self.model.count_params():,} parameters, new")
            return
        saved, wanted = state.get("config") or {}, cfg.to_dict()
        differ = {k: (saved.get(k), v) for k, v in wanted.items() if k != "imagenet" and saved.get(k) != v}
        if differ:  # (imagenet only chooses the initial weights: it may differ)
            listed = ", ".join(f"{k}: checkpoint {a!r}, hyperparameters {b!r}" for k, (a, b) in differ.items())
            raise TrainingError(
                f"the checkpoint in {self.paths.checkpoints} is of another model ({listed}); use the same model "
                "hyperparameters or remove the checkpoints"
            )
        self.model = keras.saving.load_model(self.paths.checkpoints / state["model"], compile=False)
        compile_model(self.model, hp)
        note = restore_optimizer(self.model, self.paths.checkpoints / state["optimizer"])
        self.completed = int(state["completed_epochs"])
        self.history = list(state.get("history", []))
        self.previous_seconds = float(state.get("train_seconds", 0.0))
        self.resumes = [*state.get("resumes", []), self.completed]
        log(f"resuming from checkpoint {state['model']}: initial epoch {self.completed} "
            f"({self.completed} completed); {note}")

    def setup_panels(self) -> None:
        chips = self.val if self.val is not None else self.train
        n = min(PANEL_CHIPS, len(chips.images))
        idx = np.unique(np.linspace(0, len(chips.images) - 1, n).round().astype(int))
        self.panel_chips = (chips.images[idx], chips.targets[idx])
        if self.val is None:
            log("prediction panels use training chips (no validation set)")

    # -- train and finish ---------------------------------------------------------------------

    def train_epochs(self) -> None:
        epochs = self.hp["epochs"]
        if self.completed >= epochs:
            log(f"the checkpoint has {self.completed} epochs (epochs={epochs}): nothing left to train")
            return
        dataset, self.steps = make_dataset(self.train, self.hp, self.completed)
        callbacks = make_callbacks(self)
        log(f"training started: epochs {self.completed + 1}..{epochs}, {self.steps} batches of "
            f"{min(self.hp['batch_size'], len(self.train.images))} per epoch")
        self.model.fit(dataset, epochs=epochs, initial_epoch=self.completed, steps_per_epoch=self.steps, shuffle=False,
                       callbacks=callbacks, verbose=0)

    def save_interrupted(self) -> None:
        """After a signal: checkpoint the weights if the last epoch was left unfinished."""
        if self.batches_since_epoch and self.batches_since_epoch < self.steps:
            epoch = self.completed + 1
            name = f"interrupted-epoch-{epoch:04d}-batch-{self.batches_since_epoch:05d}"
            self.checkpoint(name)
            log(f"received {signal.Signals(self.stop.signum).name}: stopped in epoch {epoch} after "
                f"{self.batches_since_epoch} of {self.steps} batches; checkpoint {name} saved "
                f"({self.completed} completed epochs; epoch {epoch} is re-run on resume)")
        else:
            log(f"received {signal.Signals(self.stop.signum).name}: stopped after epoch {self.completed}; "
                f"checkpoint epoch-{self.completed:04d} saved")

    def save_model(self) -> None:
        import keras
        import tensorflow as tf

        hp, cfg = self.hp, self.hp["config"]
        out = self.paths.model
        out.mkdir(parents=True, exist_ok=True)
        plain = keras.Model(self.model.input, self.model.output, name=self.model.name)
        plain.save(out / "model.keras")
        last_val = next((h for h in reversed(self.history) if "val_iou" in h), None)
        meta = {
            "model_id": hp["model_id"],
            "version": hp["version"] or os.environ.get("TRAINING_JOB_NAME")
            or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
            "trained": True,
            "description": hp["description"] or self.description(),
            "threshold": hp["threshold"],
            "config": cfg.to_dict(),
            "training": {
                "entry_point": "python -m training.train",
                "job": os.environ.get("TRAINING_JOB_NAME"),
                "hyperparameters": public_hyperparameters(hp),
                "optimizer": f"Adam, learning rate {hp['learning_rate']}",
                "loss": f"weighted BCE (pos_weight {hp['pos_weight']})" if cfg.head == "binary"
                else f"Huber on the signed distance (delta {hp['huber_delta']} m)",
                "augmentation": "random 90-degree rotations and horizontal flips" if hp["augment"] else "none",
                "data": {"train": self.train.summary(), "validation": self.val.summary() if self.val is not None else None},
                "epochs_completed": self.completed,
                "resumed_at_epochs": self.resumes,
                "metrics": self.history,
                "elapsed_seconds": round(self.previous_seconds + time.time() - self.started, 1),
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            "validation": None if last_val is None else {
                k: last_val[k] for k in ("epoch", "val_loss", "val_mse", "val_iou", "val_f1", "val_precision", "val_recall")
                if k in last_val
            },
        }
        (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        log(f"saved {out / 'model.keras'} and {out / 'model.json'}")
        self.export(plain)
        targets = [out / "progress.gif", self.paths.output_data / "progress.gif"]
        gifs = write_gif(self.paths.checkpoints / "panels", targets)
        if gifs:
            log("progress GIF: " + ", ".join(str(g) for g in gifs))

    def export(self, plain) -> None:
        target = self.paths.model / "export"
        try:
            if target.exists():
                shutil.rmtree(target)
            plain.export(str(target), verbose=False)
            log(f"exported a TensorFlow SavedModel to {target}")
        except Exception as e:  # noqa: BLE001 -- the .keras model is the product; the export is extra
            log(f"warning: SavedModel export failed ({type(e).__name__}: {e}); continuing without {target}")

    def description(self) -> str:
        cfg = self.hp["config"]
        width = f" x{cfg.alpha:g}" if cfg.backbone == "mobilenetv2" else ""
        head = "building probability" if cfg.head == "binary" else "signed distance"
        return (f"DeepLab V3+ ({cfg.backbone}{width}, OS {cfg.output_stride}, {head} head) trained "
                f"{self.completed} epochs on {len(self.train.images)} chips from {self.train.source.path}")


def log(message: str) -> None:
    print(message, flush=True)


def load_data(paths: Paths, hp: dict) -> tuple[Chips, Chips | None]:
    head, size = hp["config"].head, hp["config"].input_size
    train_src = resolve_channel(paths.train, "train", "train", required=True)
    val_src = resolve_channel(paths.validation, "validation", "validation", required=False)
    train = load_chips(train_src, head, hp["max_train_chips"], hp["seed"])
    if not len(train.images):
        raise TrainingError(f"the train channel {paths.train} has no train chips")
    check_chip_size(train, size)
    val = None
    if val_src is None:
        log(f"no validation channel ({paths.validation}): training without validation metrics")
    else:
        val = load_chips(val_src, head)
        if not len(val.images):
            log(f"the validation channel {paths.validation} has no validation chips: training without validation metrics")
            val = None
        else:
            check_chip_size(val, size)
    log(f"data: {len(train.images)} train chips ({train.source.kind} {train.source.path}), "
        f"{0 if val is None else len(val.images)} validation chips, {train.size} px")
    return train, val


def run(paths: Paths, stop: StopFlag) -> int:
    hp = parse_hyperparameters(read_hyperparameters(paths.hyperparameters))
    log("hyperparameters: " + json.dumps(public_hyperparameters(hp), sort_keys=True))
    train, val = load_data(paths, hp)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    job = Run(paths=paths, hp=hp, stop=stop, train=train, val=val)
    if stop.signum:
        raise Interrupted
    job.setup_model()
    job.setup_panels()
    if stop.signum:
        raise Interrupted
    job.train_epochs()
    if stop.signum:
        job.save_interrupted()
        return 128 + stop.signum
    job.save_model()
    log(f"done: {job.completed} epochs in {time.time() - job.started:.1f} s")
    return 0


def write_failure(paths: Paths, reason: str) -> None:
    print(reason, file=sys.stderr, flush=True)
    try:
        paths.failure.parent.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(reason + "\n")
    except OSError as e:
        print(f"could not write {paths.failure}: {e}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None, help=f"SageMaker root (default: $LG_SM_ROOT or {DEFAULT_ROOT})")
    parser.add_argument("--help-hyperparameters", action="store_true", help="print the hyperparameter table")
    args = parser.parse_args(argv)
    if args.help_hyperparameters:
        print(hyperparameter_table())
        return 0
    paths = Paths.resolve(args.root)
    try:
        paths.failure.unlink(missing_ok=True)  # a previous attempt's reason is not this one's
    except OSError:
        pass
    stop = StopFlag()
    previous = {s: signal.signal(s, stop.handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return run(paths, stop)
    except Interrupted:
        log(f"received {signal.Signals(stop.signum).name} before training started: exiting (no new checkpoint)")
        return 128 + stop.signum
    except HyperparameterError as e:
        write_failure(paths, f"bad hyperparameters: {e}")
        return EXIT_BAD_HYPERPARAMETERS
    except TrainingError as e:
        write_failure(paths, f"training failed: {e}")
        return EXIT_FAILURE
    except Exception as e:  # noqa: BLE001 -- SageMaker needs the reason in output/failure
        write_failure(paths, f"training failed: {type(e).__name__}: {e}\n\n{traceback.format_exc()}")
        return EXIT_FAILURE
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main())

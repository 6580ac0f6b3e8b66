"""The training job's hyperparameters: their table, parsing and validation.

SageMaker writes every value of ``input/config/hyperparameters.json`` as a string (``"16"``,
``"true"``). JSON numbers and booleans are accepted as well, and so are JSON-encoded strings
(``"\\"xception\\""``, as the SageMaker Python SDK sends them). Every value is validated and an
error names the key; an unknown key is an error that names the closest known one (all of them
when none is close). The table is
:data:`HYPERPARAMETERS` (``python -m training.train --help-hyperparameters`` prints it).

Imports no TensorFlow (the CLI and the stack import it): :func:`parse_hyperparameters` checks
the model fields with :class:`looking_glass.model.config.ModelConfig`, which needs no Keras, so
``train`` checks every hyperparameter, combinations included, before anything is staged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from looking_glass.training.errors import HyperparameterError

__all__ = [
    "FINETUNE_DEFAULTS",
    "HYPERPARAMETERS",
    "MODEL_KEYS",
    "HyperparameterError",
    "Spec",
    "check_values",
    "default_model_id",
    "hyperparameter_table",
    "parse_hyperparameters",
    "public_hyperparameters",
    "read_hyperparameters",
]


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
    """One hyperparameter: its parser, default (``None``: optional, unset) and documentation."""

    parse: object  # (key, raw value) -> value
    default: object  # None: optional, unset
    kind: str
    meaning: str


def _int(lo=None, hi=None):
    return lambda k, v: _as_int(k, v, lo, hi)


def _float(lo=None, hi=None, lo_open=False, hi_open=False):
    return lambda k, v: _as_float(k, v, lo, hi, lo_open, hi_open)


LR_SCHEDULES = ("constant", "cosine", "linear")
LOSSES = ("bce", "bce_dice", "lovasz")
AUGMENT_MODES = ("full", "photometric", "geometric", "none")

# The keys the job accepts. Model fields are passed to looking_glass.model.config.ModelConfig, which
# validates their combination (e.g. alpha for Xception, input_size for the backbone).
HYPERPARAMETERS: dict[str, Spec] = {
    "epochs": Spec(_int(1), 10, "int >= 1", "epochs to train (in total, counting resumed ones)"),
    "batch_size": Spec(_int(1, 512), 16, "int 1..512", "chips per batch; an epoch is floor(chips / batch_size) batches"),
    "learning_rate": Spec(_float(0, lo_open=True), 1e-3, "float > 0", "Adam (peak) learning rate"),
    "lr_schedule": Spec(_as_choice(LR_SCHEDULES), "constant", "|".join(LR_SCHEDULES),
                        "learning rate per epoch after the frozen epochs: constant, cosine or linear decay to "
                        "min_lr_ratio x learning_rate at the last epoch"),
    "min_lr_ratio": Spec(_float(0, 1), 0.05, "float 0..1", "cosine/linear: the last epoch's fraction of learning_rate"),
    "loss": Spec(_as_choice(LOSSES), "bce", "|".join(LOSSES),
                 "binary head: weighted BCE, BCE + soft Dice, or the Lovasz hinge (the SDT head always uses Huber)"),
    "freeze_epochs": Spec(_int(0), 0, "int >= 0",
                          "first epochs with the encoder (backbone) frozen, at learning_rate: a warm-up of the "
                          "decoder and head, for fine-tuning"),
    "patience": Spec(_int(0), 0, "int >= 0",
                     "early stopping: stop after this many epochs without a better val_iou (0: never; needs "
                     "validation chips)"),
    "restore_best": Spec(_as_bool, False, "bool",
                         "write the weights of the epoch with the best val_iou as the model, not the last ones"),
    "random_crops": Spec(_as_bool, False, "bool",
                         "sample chips as random windows over the mosaic of neighbouring chips (tile or row/column "
                         "ids), so that few chips yield many different samples"),
    "samples_per_epoch": Spec(_int(1), None, "int >= 1, optional",
                              "chips drawn per epoch (default: the number of train chips)"),
    "augment_mode": Spec(_as_choice(AUGMENT_MODES), None, "|".join(AUGMENT_MODES) + ", optional",
                         "with augment: full (also zoom and no-data wedges), photometric, geometric (rotation and "
                         "flip); default: $LOOKING_GLASS_AUGMENT or photometric"),
    "init_source": Spec(_as_str, None, "string, optional",
                        "where the init channel's model came from (recorded in the sidecar's parent)"),
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


# Defaults that replace the table's when the job fine-tunes (an ``init`` channel holds a model):
# small data wants a short warm-up of the decoder with the encoder frozen, then everything at a
# decaying learning rate, random crops with rotations and flips, early stopping on val_iou and the
# best epoch's weights. Keys given explicitly always win. The augmentation is "geometric": on
# splits inside the SpaceNet sample's western half (docs/training.md, the few-shot benchmark) the
# photometric changes ("full", "photometric") held the small model back (held-out IoU 0.15-0.18
# against 0.25-0.31). Users' labels usually come from the very imagery the model will run on.
FINETUNE_DEFAULTS = {
    "epochs": 24,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "lr_schedule": "cosine",
    "loss": "bce_dice",
    "freeze_epochs": 3,
    "patience": 8,
    "restore_best": True,
    "random_crops": True,
    "samples_per_epoch": 64,
    "augment": True,
    "augment_mode": "geometric",
    "bn_momentum": 0.9,
}


def hyperparameter_table() -> str:
    """The hyperparameter table as aligned text (name, type, default, meaning), one key a line."""
    rows = [("name", "type", "default", "meaning")]
    rows += [(k, s.kind, "-" if s.default is None else str(s.default), s.meaning) for k, s in HYPERPARAMETERS.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    table = "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows)
    tuned = ", ".join(f"{k}={v}" for k, v in FINETUNE_DEFAULTS.items())
    return (f"{table}\n\nFine-tuning (an init channel holds the starting model): its sidecar's config sets the "
            f"model keys, and these defaults replace the table's: {tuned}")


def _check_known(raw: dict) -> None:
    """HyperparameterError for the first key (sorted) that is not in :data:`HYPERPARAMETERS`,
    with the closest known name ("did you mean"), or all of them when none is close."""
    import difflib

    unknown = sorted(str(k) for k in set(raw) - set(HYPERPARAMETERS))
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], list(HYPERPARAMETERS), n=1, cutoff=0.6)
    # Without a close one, the names themselves: a training job's failure file is all its user sees.
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(HYPERPARAMETERS))}"
    more = f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""
    raise HyperparameterError(f"unknown hyperparameter {unknown[0]!r}{more}{hint}")


def check_values(raw: dict) -> None:
    """Check what a caller can check before anything is staged and without Keras: ``raw`` is a
    JSON object, every key is known (:func:`_check_known`), every value given parses and lies in
    its key's range (the same :class:`Spec` parsers as :func:`parse_hyperparameters`). Raises
    :class:`HyperparameterError` naming the key; the combination checks (model config, a
    fine-tune's init model) stay with :func:`parse_hyperparameters`."""
    if not isinstance(raw, dict):
        raise HyperparameterError(f"hyperparameters must be a JSON object, got {type(raw).__name__}")
    _check_known(raw)
    for key, value in raw.items():
        if value is not None:
            HYPERPARAMETERS[key].parse(key, value)


def parse_hyperparameters(raw: dict, init_config: dict | None = None) -> dict:
    """Validated hyperparameters (defaults filled in) from SageMaker's string-valued dict.

    ``init_config``: the ``config`` of the model the job fine-tunes (its sidecar's), or ``None``
    for training from scratch. When given, :data:`FINETUNE_DEFAULTS` replace the table's defaults
    and the model keys come from it: a ``head`` or ``input_size`` given that differs from it is
    an error (the model cannot become another one); other model keys given are overridden (the
    returned ``overridden`` lists them).

    Raises :class:`HyperparameterError` naming the key (unknown keys, bad values, and
    ``ModelConfig``'s own checks of the model fields). Also returns ``config``, the
    ``ModelConfig`` of the model fields (:mod:`looking_glass.model.config`: no Keras).
    """
    from looking_glass.model.config import ModelConfig

    if not isinstance(raw, dict):
        raise HyperparameterError(f"hyperparameters must be a JSON object, got {type(raw).__name__}")
    _check_known(raw)
    defaults = {k: s.default for k, s in HYPERPARAMETERS.items()}
    if init_config is not None:
        defaults.update(FINETUNE_DEFAULTS)
    hp = {}
    given = {k for k in HYPERPARAMETERS if k in raw and raw[k] is not None}
    for key, spec in HYPERPARAMETERS.items():
        hp[key] = spec.parse(key, raw[key]) if key in given else defaults[key]
    overridden = []
    if init_config is not None:
        try:
            init = ModelConfig(**{k: v for k, v in init_config.items() if k in MODEL_KEYS})
        except (TypeError, ValueError) as e:
            raise HyperparameterError(f"the init model's config is not a valid model config: {e}") from None
        for key in ("head", "input_size"):
            if key in given and hp[key] != getattr(init, key):
                raise HyperparameterError(
                    f"hyperparameter {key!r} is {hp[key]!r} but the init model's is {getattr(init, key)!r}: a "
                    f"fine-tuned model keeps its starting model's {key} (train from scratch for another)"
                )
        for key in MODEL_KEYS:
            if key in given and key != "imagenet" and hp[key] != getattr(init, key):
                overridden.append(key)
            hp[key] = getattr(init, key)
    try:
        config = ModelConfig(**{k: hp[k] for k in MODEL_KEYS})
    except ValueError as e:
        raise HyperparameterError(f"model hyperparameters: {e}") from None
    if "freeze_epochs" not in given:  # a default warm-up never takes every epoch
        hp["freeze_epochs"] = min(hp["freeze_epochs"], hp["epochs"] - 1)
    if hp["freeze_epochs"] >= hp["epochs"] and hp["freeze_epochs"]:
        raise HyperparameterError(
            f"hyperparameter 'freeze_epochs' ({hp['freeze_epochs']}) must be below 'epochs' ({hp['epochs']}): "
            "the encoder would never be trained"
        )
    hp["config"] = config
    if overridden:
        hp["overridden"] = overridden
    if hp["model_id"] is None:
        hp["model_id"] = default_model_id(config)
    return hp


def default_model_id(cfg) -> str:
    """The sidecar model_id of a ``ModelConfig``, e.g. ``deeplabv3plus-mobilenetv2a100-binary``."""
    width = f"a{round(cfg.alpha * 100):03d}" if cfg.backbone == "mobilenetv2" else ""
    suffix = f"-os{cfg.output_stride}" if cfg.output_stride != 16 else ""
    return f"deeplabv3plus-{cfg.backbone}{width}-{cfg.head}{suffix}"


def public_hyperparameters(hp: dict) -> dict:
    """The hyperparameters as JSON-able values (for the sidecar and checkpoints)."""
    return {k: v for k, v in hp.items() if k not in ("config", "overridden")}


def read_hyperparameters(path: Path) -> dict:
    """The raw hyperparameters of ``path`` (a JSON object); ``{}`` if the file does not exist.

    Raises :class:`HyperparameterError` if it is not JSON or not an object.
    """
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text() or "{}")
    except ValueError as e:
        raise HyperparameterError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise HyperparameterError(f"{path}: must hold a JSON object, got {type(raw).__name__}")
    return raw

